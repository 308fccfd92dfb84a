//! A cap on the requests in flight to the model provider, shared by every user in the process
//! (enrichment, triage investigations, Slack and dashboard chats, tuning drafts, embeddings),
//! so that a burst of work queues here instead of turning into a burst of 429s.
//!
//! A waiting request holds no resources but its future; the wait counts against nothing (the
//! adapter's own deadline starts once a permit is held).

use async_trait::async_trait;
use heron_core::llm::{ChatModel, ChatRequest, ChatResponse, Embedder, Embeddings, LlmError};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Permits for requests to one provider; clone it into each [`Limited`] adapter that should
/// share the cap.
#[derive(Debug, Clone)]
pub struct RequestLimit(Arc<Semaphore>);

impl RequestLimit {
    /// At most `max_in_flight` (at least 1) requests at once.
    pub fn new(max_in_flight: usize) -> Self {
        Self(Arc::new(Semaphore::new(max_in_flight.max(1))))
    }

    async fn acquire(&self) -> Result<tokio::sync::SemaphorePermit<'_>, LlmError> {
        self.0
            .acquire()
            .await
            .map_err(|e| LlmError::Other(format!("the model request limit is closed: {e}")))
    }
}

/// A chat model or embedder whose requests wait for a permit of a shared [`RequestLimit`].
pub struct Limited<T: ?Sized> {
    limit: RequestLimit,
    inner: Arc<T>,
}

impl<T: ?Sized> Limited<T> {
    pub fn new(inner: Arc<T>, limit: RequestLimit) -> Self {
        Self { limit, inner }
    }
}

#[async_trait]
impl ChatModel for Limited<dyn ChatModel> {
    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let _permit = self.limit.acquire().await?;
        self.inner.chat(request).await
    }
}

#[async_trait]
impl Embedder for Limited<dyn Embedder> {
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
        let _permit = self.limit.acquire().await?;
        self.inner.embed(texts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heron_core::llm::{FinishReason, TokenUsage};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Records the most requests it ever had in flight at once.
    #[derive(Default)]
    struct Slow {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Slow {
        async fn work(&self) {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl ChatModel for Slow {
        fn model(&self) -> &str {
            "slow"
        }
        async fn chat(&self, _: ChatRequest) -> Result<ChatResponse, LlmError> {
            self.work().await;
            Ok(ChatResponse {
                content: Some("ok".into()),
                tool_calls: Vec::new(),
                finish_reason: FinishReason::Stop,
                usage: TokenUsage::default(),
                model: "slow".into(),
            })
        }
    }

    #[async_trait]
    impl Embedder for Slow {
        fn dimensions(&self) -> usize {
            1
        }
        fn name(&self) -> &str {
            "slow"
        }
        async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
            self.work().await;
            Ok(Embeddings {
                vectors: texts.iter().map(|_| vec![0.0]).collect(),
                usage: TokenUsage::default(),
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn chats_and_embeddings_share_one_cap_on_requests_in_flight() {
        let provider = Arc::new(Slow::default());
        let limit = RequestLimit::new(3);
        let chat: Arc<dyn ChatModel> = Arc::new(Limited::<dyn ChatModel>::new(
            provider.clone() as Arc<dyn ChatModel>,
            limit.clone(),
        ));
        let embed: Arc<dyn Embedder> = Arc::new(Limited::<dyn Embedder>::new(
            provider.clone() as Arc<dyn Embedder>,
            limit,
        ));
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..24 {
            let chat = chat.clone();
            let embed = embed.clone();
            calls.spawn(async move {
                if i % 2 == 0 {
                    chat.chat(ChatRequest {
                        messages: Vec::new(),
                        tools: Vec::new(),
                        max_tokens: None,
                    })
                    .await
                    .map(|_| ())
                } else {
                    embed.embed(&["x".to_owned()]).await.map(|_| ())
                }
            });
        }
        while let Some(done) = calls.join_next().await {
            done.unwrap().unwrap();
        }
        assert_eq!(
            provider.most.load(Ordering::SeqCst),
            3,
            "never more than the cap, and the cap is used"
        );
    }
}
