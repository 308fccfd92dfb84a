//! A local embedder for when no embedding model is configured: signed feature hashing.
//!
//! Each text is lower-cased and split into words (runs of letters, digits, `.`, `-`, `_`, `:`
//! and `/`, so IPs, domains, ARNs and paths stay whole); every word and every character
//! trigram of every word becomes a feature. A feature's FNV-1a hash picks a dimension and a
//! sign; the vector is the signed count per dimension, L2-normalised, so cosine similarity is
//! the dot product. Words weigh twice as much as trigrams: sharing an exact indicator says more
//! than sharing fragments.
//!
//! It is deterministic (the same text always gives the same vector, across processes and
//! versions of Rust), needs no network, and is good at what past-ticket search mostly needs —
//! alerts that share titles, rule names, hosts, users and indicators — while knowing nothing
//! of synonyms. An empty text gives the zero vector.

use async_trait::async_trait;
use heron_core::llm::{Embedder, Embeddings, LlmError, TokenUsage};

#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimensions: usize,
    name: String,
}

impl HashingEmbedder {
    pub const DEFAULT_DIMENSIONS: usize = 256;

    /// `dimensions` is clamped to at least 8.
    pub fn new(dimensions: usize) -> Self {
        let dimensions = dimensions.max(8);
        Self {
            dimensions,
            name: format!("heron-hashing-v1-{dimensions}"),
        }
    }

    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0f32; self.dimensions];
        let lower = text.to_lowercase();
        let words = lower
            .split(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/')))
            .map(|w| w.trim_matches(|c: char| matches!(c, '.' | '-' | ':' | '/')))
            .filter(|w| !w.is_empty());
        for word in words {
            self.add(&mut vector, word.as_bytes(), 2.0);
            let chars: Vec<char> = format!("^{word}$").chars().collect();
            for gram in chars.windows(3) {
                let gram: String = gram.iter().collect();
                self.add(&mut vector, gram.as_bytes(), 1.0);
            }
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }

    fn add(&self, vector: &mut [f32], feature: &[u8], weight: f32) {
        let hash = fnv1a(feature);
        let index = (hash % self.dimensions as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        if let Some(slot) = vector.get_mut(index) {
            *slot += sign * weight;
        }
    }
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self::new(Self::DEFAULT_DIMENSIONS)
    }
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases (unlike `std`'s hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
        Ok(Embeddings {
            vectors: texts.iter().map(|t| self.embed_one(t)).collect(),
            usage: TokenUsage::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn alerts_about_the_same_host_and_rule_are_closer_than_unrelated_ones() {
        let e = HashingEmbedder::default();
        let a = e
            .embed_one("GuardDuty: Backdoor:EC2/C&CActivity.B!DNS on Instance i-0abc in us-east-1");
        let b = e
            .embed_one("GuardDuty: Backdoor:EC2/C&CActivity.B!DNS on Instance i-0abc in us-west-2");
        let c =
            e.embed_one("Okta: user.session.start failed for alice@example.com from 203.0.113.9");
        assert!(cosine(&a, &b) > 0.7, "{}", cosine(&a, &b));
        assert!(cosine(&a, &c) < 0.3, "{}", cosine(&a, &c));
    }

    #[test]
    fn vectors_are_unit_length_deterministic_and_empty_text_is_zero() {
        let e = HashingEmbedder::new(64);
        let v = e.embed_one("Terminal shell in container k8s-prod/web-7f9");
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(
            v,
            e.embed_one("Terminal shell in container k8s-prod/web-7f9")
        );
        assert_eq!(v.len(), 64);
        assert!(e.embed_one("  ").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn fnv1a_matches_the_published_test_vector() {
        // FNV-1a 64 of "a", from the algorithm's reference test suite.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
