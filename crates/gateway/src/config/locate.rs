//! Maps YAML paths (`models.chat.targets[0].provider`) to the line they are written on, so every
//! configuration problem can name its line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of every key and sequence item in a YAML document.
#[derive(Debug, Default)]
pub struct Lines(HashMap<String, usize>);

impl Lines {
    pub fn index(text: &str) -> Lines {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // A syntax error is reported by serde_yaml with its own position; keep what was indexed.
        let _ = parser.load(&mut b, false);
        Lines(b.lines)
    }

    /// The line of `path`, or of its nearest indexed ancestor.
    pub fn of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.0.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// The path of the value about to start at the top of the stack.
    fn value_path(&self) -> Option<String> {
        match self.stack.last()? {
            Frame::Map { path, key: Some(k) } => Some(join(path, k)),
            Frame::Map { key: None, .. } => None,
            Frame::Seq { path, index } => Some(format!("{path}[{index}]")),
        }
    }

    /// After a value is complete, the parent moves on.
    fn advance(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn start(&mut self, mark: &Marker, seq: bool) {
        let path = if self.stack.is_empty() {
            String::new()
        } else {
            let Some(p) = self.value_path() else { return };
            if matches!(self.stack.last(), Some(Frame::Seq { .. })) {
                self.lines.insert(p.clone(), mark.line());
            }
            p
        };
        self.stack.push(if seq {
            Frame::Seq { path, index: 0 }
        } else {
            Frame::Map { path, key: None }
        });
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => match self.stack.last_mut() {
                Some(Frame::Map { path, key }) if key.is_none() => {
                    let p = join(path, &value);
                    self.lines.insert(p, mark.line());
                    *key = Some(value);
                }
                Some(Frame::Seq { path, index }) => {
                    self.lines.insert(format!("{path}[{index}]"), mark.line());
                    self.advance();
                }
                _ => self.advance(),
            },
            Event::MappingStart(..) => self.start(&mark, false),
            Event::SequenceStart(..) => self.start(&mark, true),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.advance();
            }
            Event::Alias(_) => self.advance(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_paths() {
        let text = "listen: x\nmodels:\n  chat:\n    targets:\n      - provider: a\n        model: b\n      - { provider: c, model: d }\n";
        let l = Lines::index(text);
        assert_eq!(l.of("listen"), Some(1));
        assert_eq!(l.of("models.chat"), Some(3));
        assert_eq!(l.of("models.chat.targets[0].provider"), Some(5));
        assert_eq!(l.of("models.chat.targets[0].model"), Some(6));
        assert_eq!(l.of("models.chat.targets[1].model"), Some(7));
        assert_eq!(l.of("models.chat.targets[1].nothing"), Some(7));
    }
}
