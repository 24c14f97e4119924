//! What each request does, composed from the stages (`crate::stages`) after its checks
//! (`crate::validate`): a question (Ask, AskStream), a chat turn, and the memory operations
//! (Remember, Forget, Search).

pub mod ask;
pub mod chat;
pub mod memories;
