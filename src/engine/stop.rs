//! Decoded text of a generation and stop-string matching across token boundaries.
//!
//! Text is decoded incrementally; a stop string may start inside one token and end in a later one.
//! Text becomes "ready" for streaming only once it can no longer be the start of a stop string.

use crate::error::Result;
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Largest byte index <= i on a char boundary.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(crate) struct TextTracker<'t> {
    stream: Option<StreamDecoder<'t>>,
    pub text: String,
    emitted: usize,
    /// Bytes held back: longest stop string minus one.
    hold: usize,
    stops: &'t [String],
    pub stop_string: Option<String>,
}

impl<'t> TextTracker<'t> {
    pub fn new(tok: Option<&'t Tokenizer>, stops: &'t [String]) -> Self {
        TextTracker {
            stream: tok.map(Tokenizer::stream),
            text: String::new(),
            emitted: 0,
            hold: stops.iter().map(String::len).max().unwrap_or(1) - 1,
            stops,
            stop_string: None,
        }
    }

    /// Adds a generated id; returns true when a stop string matched (the text is then cut before it).
    pub fn push(&mut self, id: u32) -> Result<bool> {
        let scan_from = self.text.len();
        if let Some(s) = self.stream.as_mut() {
            if let Some(delta) = s.push(id)? {
                self.text.push_str(&delta);
            }
        }
        if self.stops.is_empty() || self.text.len() == scan_from {
            return Ok(false);
        }
        // A new match must end in the new text, so it starts at most `hold` bytes before it.
        let from = floor_boundary(&self.text, scan_from.saturating_sub(self.hold));
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|p| (from + p, s)))
            .min_by_key(|(p, _)| *p);
        if let Some((pos, s)) = hit {
            self.text.truncate(pos);
            self.stop_string = Some(s.clone());
            return Ok(true);
        }
        Ok(false)
    }

    /// Text that is final and not yet handed out; with `done`, everything left.
    pub fn take_ready(&mut self, done: bool) -> Option<&str> {
        let safe = if done {
            self.text.len()
        } else {
            floor_boundary(&self.text, self.text.len().saturating_sub(self.hold))
        };
        if safe > self.emitted {
            let s = &self.text[self.emitted..safe];
            self.emitted = safe;
            Some(s)
        } else {
            None
        }
    }
}
