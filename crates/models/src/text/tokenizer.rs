//! Tokenisers: Hugging Face `tokenizer.json`, or a GPT-2 style BPE rebuilt from GGUF metadata
//! (tokens, merges, token types and the pre-tokeniser named by `tokenizer.ggml.pre`).

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{ModelError, Result};
use crate::formats::gguf::{Gguf, Value};

const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokeniser with its special tokens.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Beginning-of-sequence token, if the model uses one.
    pub bos: Option<u32>,
    /// End-of-sequence tokens (EOS and end-of-turn tokens).
    pub eos: Vec<u32>,
    /// Text of the BOS token (for chat templates).
    pub bos_text: String,
    /// Text of the EOS token (for chat templates).
    pub eos_text: String,
}

fn tok_err(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer { path: path.to_path_buf(), reason: reason.to_string() }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json`; special tokens are named by the caller.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(tok_err(path, "file not found"));
        }
        let inner = Tokenizer::from_file(path).map_err(|e| tok_err(path, e))?;
        Ok(Self { inner, bos: None, eos: Vec::new(), bos_text: String::new(), eos_text: String::new() })
    }

    /// Rebuilds the tokeniser stored in a GGUF file's metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let path = gguf.path.as_path();
        let model = gguf.metadata.get("tokenizer.ggml.model").and_then(Value::as_str);
        match model {
            Some("gpt2") => {}
            Some(other) => return Err(tok_err(path, format!("tokenizer model `{other}` is not supported (only GPT-2 style BPE)"))),
            None => return Err(tok_err(path, "the file holds no tokenizer (tokenizer.ggml.model is missing)")),
        }
        let list = |key: &str| -> Result<Vec<String>> {
            let values = gguf.metadata.get(key).and_then(Value::as_array).ok_or_else(|| tok_err(path, format!("`{key}` is missing")))?;
            values
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| tok_err(path, format!("`{key}` holds a non-string"))))
                .collect()
        };
        let tokens = list("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = list("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| tok_err(path, format!("merge `{m}` has no space"))))
            .collect::<Result<_>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| tok_err(path, e))?;
        let mut inner = Tokenizer::new(bpe);
        let pre = gguf.metadata.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
        let byte_level = |regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, regex));
        let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
            let split = Split::new(SplitPattern::Regex(pattern.to_string()), SplitDelimiterBehavior::Isolated, false).map_err(|e| tok_err(path, e))?;
            Ok(PreTokenizerWrapper::Split(split))
        };
        let pre_tokenizer = match pre {
            "default" | "gpt2" | "gpt-2" => byte_level(true),
            "smollm" | "starcoder" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level(true),
            ])),
            "llama3" | "llama-bpe" | "smaug-bpe" => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(LLAMA3_PATTERN)?, byte_level(false)])),
            "qwen2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(QWEN2_PATTERN)?, byte_level(false)])),
            other => return Err(tok_err(path, format!("pre-tokenizer `{other}` is not supported (gpt2, smollm, llama-bpe, qwen2)"))),
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        // Control and user-defined tokens are matched whole in text, as special tokens.
        let types = gguf.metadata.get("tokenizer.ggml.token_type").and_then(Value::as_array);
        let specials: Vec<AddedToken> = match types {
            Some(types) => types
                .iter()
                .enumerate()
                .filter(|(_, t)| matches!(t.as_u64(), Some(3) | Some(4)))
                .filter_map(|(i, _)| tokens.get(i))
                .map(|t| AddedToken::from(t.clone(), true))
                .collect(),
            None => Vec::new(),
        };
        inner.add_special_tokens(&specials);

        let id = |key: &str| gguf.metadata.get(key).and_then(Value::as_u64).map(|v| v as u32);
        let text = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize)).cloned().unwrap_or_default();
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos_id = id("tokenizer.ggml.eos_token_id");
        let mut eos: Vec<u32> = eos_id.into_iter().collect();
        // End-of-turn tokens of common chat templates also end generation.
        for name in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>"] {
            if let Some(i) = tokens.iter().position(|t| t == name) {
                let i = i as u32;
                if !eos.contains(&i) {
                    eos.push(i);
                }
            }
        }
        let add_bos = gguf.metadata.get("tokenizer.ggml.add_bos_token").map(|v| *v == Value::Bool(true)).unwrap_or(false);
        Ok(Self { inner, bos: add_bos.then_some(bos).flatten(), eos, bos_text: text(bos), eos_text: text(eos_id) })
    }

    /// Token ids of `text`; special-token strings in it become their tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(|e| ModelError::Tokenizer { path: "<tokenizer>".into(), reason: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of `text` with the byte range `[start, end)` of `text` each token covers.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<(usize, usize)>)> {
        let encoding = self.inner.encode(text, false).map_err(|e| ModelError::Tokenizer { path: "<tokenizer>".into(), reason: e.to_string() })?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// Token ids of `text` with the model's special tokens added (e.g. BERT's [CLS] and [SEP]),
    /// truncated as configured.
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, true).map_err(|e| ModelError::Tokenizer { path: "<tokenizer>".into(), reason: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// [`TextTokenizer::encode_with_special`] of many texts, tokenised in parallel (the
    /// tokenizer's thread pool), in input order.
    pub fn encode_batch_with_special(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self.inner.encode_batch(inputs, true).map_err(|e| ModelError::Tokenizer { path: "<tokenizer>".into(), reason: e.to_string() })?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Truncates encodings to `max_tokens` (special tokens included); no padding.
    pub fn set_truncation(&mut self, max_tokens: usize) -> Result<()> {
        let truncation = tokenizers::TruncationParams { max_length: max_tokens, ..Default::default() };
        self.inner
            .with_truncation(Some(truncation))
            .map_err(|e| ModelError::Tokenizer { path: "<tokenizer>".into(), reason: e.to_string() })?;
        self.inner.with_padding(None);
        Ok(())
    }

    /// Turns truncation and padding off (for splitting long texts into chunks).
    pub fn without_truncation(mut self) -> Result<Self> {
        self.inner.with_truncation(None).map_err(|e| ModelError::Tokenizer { path: "<tokenizer>".into(), reason: e.to_string() })?;
        self.inner.with_padding(None);
        Ok(self)
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| ModelError::Tokenizer { path: "<tokenizer>".into(), reason: e.to_string() })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
