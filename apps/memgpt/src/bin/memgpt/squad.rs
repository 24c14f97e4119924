//! SQuAD v1.1 data and scoring: questions with their paragraph, the official answer
//! normalisation, exact match and token F1 (best over the gold answers).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    data: Vec<Article>,
}
#[derive(Deserialize)]
struct Article {
    title: String,
    paragraphs: Vec<Paragraph>,
}
#[derive(Deserialize)]
struct Paragraph {
    context: String,
    qas: Vec<Qa>,
}
#[derive(Deserialize)]
struct Qa {
    id: String,
    question: String,
    answers: Vec<Answer>,
}
#[derive(Deserialize)]
struct Answer {
    text: String,
}

/// One paragraph.
#[derive(Debug, Clone)]
pub struct Passage {
    /// `a{article}-p{paragraph}`.
    pub id: String,
    /// The text.
    pub text: String,
    /// Article title.
    pub title: String,
    /// Index of its article in the file.
    pub article: usize,
}

/// One question.
#[derive(Debug, Clone)]
pub struct Question {
    /// SQuAD's id.
    pub id: String,
    /// The question.
    pub question: String,
    /// Gold answers.
    pub answers: Vec<String>,
    /// Index of its paragraph in [`Squad::passages`].
    pub passage: usize,
}

/// A SQuAD file.
pub struct Squad {
    /// Every paragraph.
    pub passages: Vec<Passage>,
    /// Every question.
    pub questions: Vec<Question>,
}

/// FNV-1a: a stable order for "random" subsets.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Squad {
    /// Reads a SQuAD JSON file (gzip when it ends in .gz).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut text = String::new();
        crate::eval::open_text(path)?.read_to_string(&mut text).with_context(|| format!("cannot read {}", path.display()))?;
        let file: File = serde_json::from_str(&text).with_context(|| format!("{} is not SQuAD JSON (data[].paragraphs[].qas[])", path.display()))?;
        let (mut passages, mut questions) = (Vec::new(), Vec::new());
        for (a, article) in file.data.into_iter().enumerate() {
            for (p, para) in article.paragraphs.into_iter().enumerate() {
                let index = passages.len();
                passages.push(Passage { id: format!("a{a}-p{p}"), text: para.context, title: article.title.clone(), article: a });
                for qa in para.qas {
                    let answers = qa.answers.into_iter().map(|a| a.text).collect();
                    questions.push(Question { id: qa.id, question: qa.question, answers, passage: index });
                }
            }
        }
        anyhow::ensure!(!questions.is_empty(), "{} holds no questions", path.display());
        Ok(Self { passages, questions })
    }

    /// A fixed subset of `n` questions (the same on every run), in a stable shuffled order.
    pub fn subset(&self, n: usize) -> Vec<&Question> {
        let mut qs: Vec<&Question> = self.questions.iter().collect();
        qs.sort_by_key(|q| stable_hash(&q.id));
        qs.truncate(n);
        qs
    }
}

/// SQuAD's normalisation: lower case, no punctuation, no articles, single spaces.
pub fn normalize(s: &str) -> String {
    let lower: String = s.to_lowercase().chars().filter(|c| !c.is_ascii_punctuation()).collect();
    lower.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// Exact match against the best gold answer (0 or 1).
pub fn exact_match(prediction: &str, golds: &[String]) -> f64 {
    let p = normalize(prediction);
    if golds.iter().any(|g| normalize(g) == p) {
        1.0
    } else {
        0.0
    }
}

/// Token F1 against the best gold answer.
pub fn f1(prediction: &str, golds: &[String]) -> f64 {
    let p = normalize(prediction);
    let pt: Vec<&str> = p.split_whitespace().collect();
    golds
        .iter()
        .map(|g| {
            let g = normalize(g);
            let gt: Vec<&str> = g.split_whitespace().collect();
            let mut counts: HashMap<&str, i64> = HashMap::new();
            for t in &gt {
                *counts.entry(t).or_default() += 1;
            }
            let mut same = 0i64;
            for t in &pt {
                if let Some(c) = counts.get_mut(t) {
                    if *c > 0 {
                        *c -= 1;
                        same += 1;
                    }
                }
            }
            if same == 0 {
                return 0.0;
            }
            let precision = same as f64 / pt.len() as f64;
            let recall = same as f64 / gt.len() as f64;
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_scoring() {
        let golds = vec!["the Denver Broncos".to_string(), "Broncos".to_string()];
        assert_eq!(exact_match("Denver Broncos!", &golds), 1.0);
        assert_eq!(exact_match("Carolina", &golds), 0.0);
        assert!((f1("the Denver team", &golds) - 0.5).abs() < 1e-9);
        assert_eq!(normalize("  The  Cat's, a HAT "), "cats hat");
    }
}
