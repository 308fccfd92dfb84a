//! A deterministic [`Embedder`] for tests: the same text always gives the same unit vector,
//! different texts almost surely different ones, and every call is recorded.

use crate::llm::{Embedder, Embeddings, LlmError, TokenUsage};
use async_trait::async_trait;
use std::sync::Mutex;

#[derive(Debug)]
pub struct FakeEmbedder {
    dimensions: usize,
    calls: Mutex<Vec<Vec<String>>>,
}

impl FakeEmbedder {
    /// `dimensions` is at least 1.
    pub fn new(dimensions: usize) -> Self {
        Self {
            dimensions: dimensions.max(1),
            calls: Mutex::default(),
        }
    }

    /// The texts of every call, in order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The vector `embed` gives for `text`: components drawn from a generator seeded by the
    /// text's FNV-1a hash, then L2-normalised.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let mut vector: Vec<f32> = (0..self.dimensions)
            .map(|_| {
                // xorshift64: cheap and stable; quality is irrelevant here.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }
}

#[async_trait]
impl Embedder for FakeEmbedder {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn name(&self) -> &str {
        "fake-embedder"
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(texts.to_vec());
        }
        let tokens = texts
            .iter()
            .map(|t| u32::try_from(t.split_whitespace().count()).unwrap_or(u32::MAX))
            .fold(0u32, u32::saturating_add);
        Ok(Embeddings {
            vectors: texts.iter().map(|t| self.vector(t)).collect(),
            usage: TokenUsage {
                prompt_tokens: tokens,
                completion_tokens: 0,
                total_tokens: tokens,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_text_gives_the_same_unit_vector_and_calls_are_recorded() {
        let e = FakeEmbedder::new(16);
        let out = e
            .embed(&["a b".into(), "c".into(), "a b".into()])
            .await
            .unwrap();
        assert_eq!(out.vectors.len(), 3);
        assert_eq!(out.vectors[0], out.vectors[2]);
        assert_ne!(out.vectors[0], out.vectors[1]);
        let norm: f32 = out.vectors[1].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(out.usage.total_tokens, 5);
        assert_eq!(e.calls().len(), 1);
    }
}
