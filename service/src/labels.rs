//! Class labels: reading `synset.txt` in every shape models ship it.
//!
//! Accepted forms, tried in this order by the first non-blank character:
//! * `[` — a JSON array of strings (index = position);
//! * `{` — a JSON object `{"0": "tench", ...}`, or the ModelStore's Python dict literal
//!   `{0: 'tench, Tinca tinca',\n 1: "jack-o'-lantern", ...}` (single or double quotes,
//!   backslash escapes, any whitespace, optional trailing comma);
//! * anything else — one label per line (ImageNet's `synset_words.txt` style), blank lines at
//!   the end ignored.
//!
//! Dict forms must cover the indices `0..n` exactly once. The count is checked against the
//! model's output size by the caller ([`check_count`]), which makes a mismatch a startup error.

use std::path::Path;

/// Why a labels file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file could not be read.
    #[error("cannot read labels file {}", path.display())]
    Read {
        /// `--labels`, or the model directory's `synset.txt`.
        path: std::path::PathBuf,
        /// The read failure.
        source: std::io::Error,
    },
    /// The text is not one of the accepted forms.
    #[error("labels file {}: {reason}", path.display())]
    Syntax {
        /// `--labels`, or the model directory's `synset.txt`.
        path: std::path::PathBuf,
        /// What is wrong, with a position where useful.
        reason: String,
    },
    /// The model has a different number of outputs than there are labels.
    #[error(
        "labels file {} has {labels} labels but the model outputs {outputs} classes; \
         use the synset.txt that came with the model or set --labels",
        path.display()
    )]
    CountMismatch {
        /// `--labels`, or the model directory's `synset.txt`.
        path: std::path::PathBuf,
        /// Labels read.
        labels: usize,
        /// Classes the model outputs.
        outputs: usize,
    },
}

/// Reads and parses a labels file.
pub fn load(path: &Path) -> Result<Vec<String>, LabelsError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|reason| LabelsError::Syntax {
        path: path.to_path_buf(),
        reason,
    })
}

/// Checks that there is one label per model output.
pub fn check_count(path: &Path, labels: &[String], outputs: usize) -> Result<(), LabelsError> {
    if labels.len() == outputs {
        Ok(())
    } else {
        Err(LabelsError::CountMismatch {
            path: path.to_path_buf(),
            labels: labels.len(),
            outputs,
        })
    }
}

/// Parses labels text in any accepted form.
pub fn parse(text: &str) -> Result<Vec<String>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    match trimmed.chars().next() {
        None => Err("the file is empty".into()),
        Some('[') => serde_json::from_str::<Vec<String>>(trimmed)
            .map_err(|e| format!("not a JSON array of strings: {e}")),
        Some('{') => {
            let entries =
                match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(trimmed) {
                    Ok(map) => map
                        .into_iter()
                        .map(|(k, v)| {
                            let index = k
                                .trim()
                                .parse::<usize>()
                                .map_err(|_| format!("key {k:?} is not an index"))?;
                            let label = v
                                .as_str()
                                .ok_or_else(|| format!("value of {k:?} is not a string"))?
                                .to_string();
                            Ok((index, label))
                        })
                        .collect::<Result<Vec<_>, String>>()?,
                    Err(_) => PythonDict::new(trimmed).parse()?,
                };
            dense(entries)
        }
        Some(_) => {
            let mut labels: Vec<String> = text
                .lines()
                .map(|l| l.trim_end_matches('\r').to_string())
                .collect();
            while labels.last().is_some_and(|l| l.trim().is_empty()) {
                labels.pop();
            }
            if let Some(i) = labels.iter().position(|l| l.trim().is_empty()) {
                return Err(format!("line {} is blank", i + 1));
            }
            Ok(labels)
        }
    }
}

/// Turns `(index, label)` pairs into a vector, requiring each index in `0..n` exactly once.
fn dense(entries: Vec<(usize, String)>) -> Result<Vec<String>, String> {
    let n = entries.len();
    let mut out: Vec<Option<String>> = vec![None; n];
    for (index, label) in entries {
        let slot = out
            .get_mut(index)
            .ok_or_else(|| format!("index {index} is out of range for {n} labels"))?;
        if slot.replace(label).is_some() {
            return Err(format!("index {index} appears twice"));
        }
    }
    Ok(out
        .into_iter()
        .map(|l| l.expect("every slot filled"))
        .collect())
}

/// A tiny recursive-descent reader for `{int: 'str', ...}`; nothing else of Python is needed.
struct PythonDict<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl<'a> PythonDict<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            chars: text.char_indices().peekable(),
        }
    }

    fn skip_ws(&mut self) {
        while self.chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn expect(&mut self, wanted: char) -> Result<(), String> {
        self.skip_ws();
        match self.chars.next() {
            Some((_, c)) if c == wanted => Ok(()),
            Some((at, c)) => Err(format!("expected {wanted:?} at byte {at}, found {c:?}")),
            None => Err(format!("expected {wanted:?}, found the end of the file")),
        }
    }

    fn parse(mut self) -> Result<Vec<(usize, String)>, String> {
        self.expect('{')?;
        let mut entries = Vec::new();
        loop {
            self.skip_ws();
            if self.chars.peek().is_some_and(|&(_, c)| c == '}') {
                self.chars.next();
                break;
            }
            let index = self.integer()?;
            self.expect(':')?;
            let label = self.string()?;
            entries.push((index, label));
            self.skip_ws();
            match self.chars.next() {
                Some((_, ',')) => continue,
                Some((_, '}')) => break,
                Some((at, c)) => {
                    return Err(format!("expected ',' or '}}' at byte {at}, found {c:?}"));
                }
                None => return Err("the dict is not closed".into()),
            }
        }
        self.skip_ws();
        if let Some((at, c)) = self.chars.next() {
            return Err(format!("unexpected {c:?} after the dict at byte {at}"));
        }
        Ok(entries)
    }

    fn integer(&mut self) -> Result<usize, String> {
        self.skip_ws();
        let mut digits = String::new();
        while let Some(&(_, c)) = self.chars.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            digits.push(c);
            self.chars.next();
        }
        if digits.is_empty() {
            return Err(match self.chars.peek() {
                Some(&(at, c)) => format!("expected an index at byte {at}, found {c:?}"),
                None => "expected an index, found the end of the file".into(),
            });
        }
        digits
            .parse()
            .map_err(|_| format!("index {digits} is too large"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let (start, quote) = match self.chars.next() {
            Some((at, q @ ('\'' | '"'))) => (at, q),
            Some((at, c)) => {
                return Err(format!("expected a quoted label at byte {at}, found {c:?}"));
            }
            None => return Err("expected a quoted label, found the end of the file".into()),
        };
        let mut out = String::new();
        loop {
            match self.chars.next() {
                None | Some((_, '\n')) => {
                    return Err(format!("label starting at byte {start} is not closed"));
                }
                Some((_, c)) if c == quote => return Ok(out),
                Some((_, '\\')) => match self.chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, c)) => out.push(c),
                    None => return Err("dangling backslash".into()),
                },
                Some((_, c)) => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_store_python_dict() {
        let labels = parse(&dlr_test_models::synset_text()).unwrap();
        assert_eq!(labels.len(), 10);
        assert_eq!(labels[2], "red");
        assert_eq!(labels[9], "jack-o'-lantern");
        let imagenet =
            "{0: 'tench, Tinca tinca',\n 1: 'goldfish, Carassius auratus',\n 2: 'it\\'s',}";
        assert_eq!(
            parse(imagenet).unwrap(),
            ["tench, Tinca tinca", "goldfish, Carassius auratus", "it's"]
        );
    }

    #[test]
    fn json_forms() {
        assert_eq!(parse(r#"["a", "b"]"#).unwrap(), ["a", "b"]);
        assert_eq!(parse(r#"{"1": "b", "0": "a"}"#).unwrap(), ["a", "b"]);
    }

    #[test]
    fn one_per_line() {
        assert_eq!(
            parse("n01 tench\r\nn02 goldfish\n\n").unwrap(),
            ["n01 tench", "n02 goldfish"]
        );
        assert!(parse("a\n\nb").unwrap_err().contains("line 2"));
    }

    #[test]
    fn malformed_dicts_say_where() {
        assert!(parse("{0: 'a', 0: 'b'}").unwrap_err().contains("twice"));
        assert!(
            parse("{0: 'a', 2: 'b'}")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse("{0: 'a'").unwrap_err().contains("not closed"));
        assert!(parse("{0: a}").unwrap_err().contains("quoted label"));
        assert!(parse("").is_err());
    }

    #[test]
    fn count_mismatch_names_both_numbers() {
        let err = check_count(Path::new("synset.txt"), &["a".into()], 1000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 labels") && err.contains("1000"), "{err}");
    }
}
