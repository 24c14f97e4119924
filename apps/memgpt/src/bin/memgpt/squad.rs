//! SQuAD v1.1 data and scoring: questions with their paragraph, the official answer
//! normalisation, exact match and token F1 (best over the gold answers).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

pub use memgpt_stack::scoring::{exact_match, f1};

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
