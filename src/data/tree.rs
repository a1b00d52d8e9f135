//! The search tree of one problem as data (spec 3.1, 3.5, 3.6): nodes with the reference's
//! fields, paths and answers, and the reference's JSON layout (`rstar`: tag -> node state) both
//! ways. The search's operations on it (UCT selection, backup) live in `crate::search::tree`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::steps::StepKind;

/// Index of a node in [`Tree::nodes`]; the root is 0.
pub type NodeId = usize;

/// `final_answer` of a node that hit the error threshold (the reference's string).
pub const TOO_MANY_CODE_ERRORS: &str = "Too many consecutive steps have code errors.";
/// `final_answer` of a node deeper than `max_depth` (the reference's string, typo included).
pub const TOO_MANY_STEPS: &str = "Fail to sove the problem within limited steps.";

/// `final_answer` of a node that ran into the policy's context limit.
pub const CONTEXT_LIMIT: &str = "The solution reached the model's context limit.";
/// `final_answer` of a node whose text is neither a step nor an answer.
pub const NO_STEP: &str = "The model wrote neither a step nor an answer.";

/// Why a node is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// An answer step (contains `boxed`): a valid terminal, scored and backed up to the root.
    Answer,
    /// `consecutive_errors >= errors_threshold`: invalid, −1 on the node only.
    Errors,
    /// Deeper than `max_depth`: invalid, −1 on the node only.
    Depth,
    /// Every child is terminal (spec 3.2); no value of its own.
    Exhausted,
    /// The path reached the policy's context limit (finish reason `length`): invalid, −1 on
    /// the node only.
    Length,
    /// The model wrote nothing the step format parses (EOS first, or in the tool format neither
    /// a code block nor an answer): invalid, −1 on the node only.
    Unparsed,
}

impl End {
    /// Whether the node was terminal when created with a value of its own that is not backed up.
    pub fn is_invalid(self) -> bool {
        matches!(self, End::Errors | End::Depth | End::Length | End::Unparsed)
    }
}

/// One step of a solution.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// `"0"` for the root; child k (from 1) of node t is `"t.k"`.
    pub tag: String,
    pub parent: Option<NodeId>,
    pub children: Vec<NodeId>,
    pub depth: usize,
    /// The step text (stop tag re-appended; for a last code step or an error terminal, the
    /// output block appended too).
    pub text: String,
    /// What the generated step is (`None` for the root).
    pub kind: Option<StepKind>,
    /// The executor's observation for code steps.
    pub observation: Option<String>,
    /// The extracted answer of an answer node, or the reference's failure string.
    pub final_answer: Option<String>,
    /// Why the step's execution failed, when it did.
    pub failure: Option<String>,
    /// Whether `final_answer` matches the ground truth (answer nodes, when it is known).
    pub correct: Option<bool>,
    pub visit_count: u32,
    pub value_sum: f64,
    /// The first value ever received (`update`), the reference's `value`.
    pub value: Option<f64>,
    pub end: Option<End>,
    pub consecutive_errors: u32,
}

impl Node {
    /// `value_sum / visit_count`, 0 without visits.
    pub fn q_value(&self) -> f64 {
        if self.visit_count == 0 {
            0.0
        } else {
            self.value_sum / self.visit_count as f64
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.end.is_some()
    }

    /// A terminal answer node (the ones that are graded or valued and backed up).
    pub fn is_valid_answer(&self) -> bool {
        self.end == Some(End::Answer)
    }

    /// Ends the node with `end` and the failure string `final_answer`.
    pub fn finish(&mut self, end: End, final_answer: &str) {
        self.end = Some(end);
        self.final_answer = Some(final_answer.into());
    }
}

/// One problem's tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    pub question: String,
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn new(question: impl Into<String>) -> Tree {
        Tree {
            question: question.into(),
            nodes: vec![Node {
                tag: "0".into(),
                parent: None,
                children: Vec::new(),
                depth: 0,
                text: String::new(),
                kind: None,
                observation: None,
                final_answer: None,
                failure: None,
                correct: None,
                visit_count: 0,
                value_sum: 0.0,
                value: None,
                end: None,
                consecutive_errors: 0,
            }],
        }
    }

    pub fn root(&self) -> &Node {
        &self.nodes[0]
    }

    /// Adds a non-terminal child with `text`; its tag, depth and error count are the caller's to
    /// adjust (errors start at 0).
    pub fn add_child(&mut self, parent: NodeId, text: impl Into<String>) -> NodeId {
        let id = self.nodes.len();
        let p = &self.nodes[parent];
        let node = Node {
            tag: format!("{}.{}", p.tag, p.children.len() + 1),
            parent: Some(parent),
            children: Vec::new(),
            depth: p.depth + 1,
            text: text.into(),
            kind: None,
            observation: None,
            final_answer: None,
            failure: None,
            correct: None,
            visit_count: 0,
            value_sum: 0.0,
            value: None,
            end: None,
            consecutive_errors: 0,
        };
        self.nodes.push(node);
        self.nodes[parent].children.push(id);
        id
    }

    /// Node ids from the root's child down to `id` (empty for the root).
    pub fn path(&self, id: NodeId) -> Vec<NodeId> {
        let mut v = Vec::new();
        let mut cur = Some(id);
        while let Some(i) = cur {
            if i != 0 {
                v.push(i);
            }
            cur = self.nodes[i].parent;
        }
        v.reverse();
        v
    }

    /// The texts of [`Tree::path`].
    pub fn path_texts(&self, id: NodeId) -> Vec<&str> {
        self.path(id)
            .into_iter()
            .map(|i| self.nodes[i].text.as_str())
            .collect()
    }

    /// The partial solution up to `id`: the path texts concatenated.
    pub fn solution(&self, id: NodeId) -> String {
        self.path_texts(id).concat()
    }

    /// Valid answer nodes, in creation order.
    pub fn answers(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_valid_answer())
    }

    /// The answer node with the highest `value` (first on ties): the per-run answer at test time.
    pub fn best_answer(&self) -> Option<NodeId> {
        let mut best: Option<(NodeId, f64)> = None;
        for (i, n) in self.answers() {
            let v = n.value.unwrap_or(f64::NEG_INFINITY);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        best.map(|b| b.0)
    }

    /// The reference's `rstar` map: tag -> state, breadth-first. Fields: `text`, `extra_info` (root),
    /// `action`, `action_input`, `observation`, `final_answer`, `value` (the first value, −100 when
    /// none, as the reference), `q_value`, `visit_count`; plus ours: `depth`, `terminal`, `end`,
    /// `failure`, `correct`, `consecutive_errors`, `value_sum`.
    pub fn to_rstar_json(&self) -> Value {
        let mut out = Map::new();
        let mut queue = std::collections::VecDeque::from([0usize]);
        while let Some(i) = queue.pop_front() {
            let n = &self.nodes[i];
            let is_code = n.kind.is_some_and(StepKind::is_code);
            let mut m = Map::new();
            m.insert("text".into(), json!(n.text));
            if i == 0 {
                m.insert(
                    "extra_info".into(),
                    json!(format!("question: {}", self.question)),
                );
            }
            m.insert(
                "action".into(),
                json!(if is_code { "python_interpreter" } else { "" }),
            );
            m.insert(
                "action_input".into(),
                json!(if is_code {
                    n.text.split("\n<output>").next().unwrap_or_default()
                } else {
                    ""
                }),
            );
            if let Some(o) = &n.observation {
                m.insert("observation".into(), json!(o));
            }
            m.insert(
                "final_answer".into(),
                json!(n.final_answer.as_deref().unwrap_or("")),
            );
            m.insert("value".into(), json!(n.value.unwrap_or(-100.0)));
            m.insert("q_value".into(), json!(n.q_value()));
            m.insert("visit_count".into(), json!(n.visit_count));
            m.insert("value_sum".into(), json!(n.value_sum));
            m.insert("depth".into(), json!(n.depth));
            m.insert("terminal".into(), json!(n.is_terminal()));
            m.insert("end".into(), json!(n.end));
            m.insert("failure".into(), json!(n.failure));
            m.insert("correct".into(), json!(n.correct));
            m.insert("consecutive_errors".into(), json!(n.consecutive_errors));
            out.insert(n.tag.clone(), Value::Object(m));
            queue.extend(n.children.iter().copied());
        }
        Value::Object(out)
    }
}
