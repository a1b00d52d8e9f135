//! The search's operations on a [`Tree`] (spec 3.2, 3.3): the reference's `update` /
//! `update_recursive` backup and UCT selection. The tree itself is data ([`crate::data::tree`]).

pub use crate::data::tree::{
    End, Node, NodeId, Tree, CONTEXT_LIMIT, NO_STEP, TOO_MANY_CODE_ERRORS, TOO_MANY_STEPS,
};

impl Tree {
    /// The reference's `update(v)`: N += 1, sum += v, `value` set on the first call.
    pub fn update(&mut self, id: NodeId, v: f64) {
        let n = &mut self.nodes[id];
        n.visit_count += 1;
        n.value_sum += v;
        if n.value.is_none() {
            n.value = Some(v);
        }
    }

    /// `update(v)` on `id` and every ancestor, root included.
    pub fn update_recursive(&mut self, id: NodeId, v: f64) {
        let mut cur = Some(id);
        while let Some(i) = cur {
            self.update(i, v);
            cur = self.nodes[i].parent;
        }
    }

    /// UCT of a child (spec 3.2, the reference's `puct`): Q + c·sqrt(ln N_parent / N), where Q is 0
    /// for an unvisited node (so it scores 0, not +inf) and the exploration term is 0 when N or
    /// N_parent is 0 (so under a parent with N 0 or 1 the choice is pure Q, spec 3.3e).
    pub fn uct(&self, child: NodeId, c: f64) -> f64 {
        let n = &self.nodes[child];
        let np = n.parent.map(|p| self.nodes[p].visit_count).unwrap_or(0);
        if n.visit_count == 0 || np == 0 {
            return n.q_value();
        }
        n.q_value() + c * ((np as f64).ln() / n.visit_count as f64).sqrt()
    }

    /// The non-terminal child with the highest UCT (first on ties). When the node has children
    /// and all are terminal, the node becomes terminal ([`End::Exhausted`]) and `None` comes back.
    pub fn select_child(&mut self, id: NodeId, c: f64) -> Option<NodeId> {
        let mut best: Option<(NodeId, f64)> = None;
        for &ch in &self.nodes[id].children {
            if self.nodes[ch].is_terminal() {
                continue;
            }
            let u = self.uct(ch, c);
            if best.is_none_or(|(_, b)| u > b) {
                best = Some((ch, u));
            }
        }
        if best.is_none() && !self.nodes[id].children.is_empty() && self.nodes[id].end.is_none() {
            self.nodes[id].end = Some(End::Exhausted);
        }
        best.map(|b| b.0)
    }
}
