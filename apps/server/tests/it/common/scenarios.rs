//! Scenarios written once and run over any broker: each test file gives its own nodes (one
//! embedded node, two nodes sharing a memory broker, or two nodes on Redis).

use super::{Node, join, joined, message};

/// A client that missed messages recovers exactly them on `b`, then live delivery resumes with
/// no gap and no duplicate; once the broker's history (`history_len` messages) has moved past
/// what was missed, the latest page comes instead. `a` and `b` share a broker (and may be the
/// same node).
pub(crate) async fn recovery(a: &Node, b: &Node, history_len: usize) {
    let mut alice = a.client("alice").await;
    join(&mut alice, "general").await;
    let mut sent = Vec::new();
    for i in 0..10 {
        alice
            .send_message("general", &format!("m{i}"), None)
            .await
            .unwrap();
        sent.push(message(&mut alice).await);
    }

    // Bob last saw m3; he comes back (on `b`).
    let mut bob = b.client("bob").await;
    bob.join_since("general", sent[3].id).await.unwrap();
    let (_, messages, recovered) = joined(&mut bob, "general").await;
    assert!(recovered);
    assert_eq!(messages, sent[4..]);
    alice.send_message("general", "live", None).await.unwrap();
    assert_eq!(
        message(&mut bob).await.body,
        "live",
        "no gap and no duplicate after recovery"
    );

    // Once the history no longer holds what was missed, the latest page comes instead.
    let more = history_len + 5;
    for i in 0..more {
        alice
            .send_message("general", &format!("n{i}"), None)
            .await
            .unwrap();
        message(&mut alice).await;
    }
    let mut late = b.client("late").await;
    late.join_since("general", sent[3].id).await.unwrap();
    let (_, messages, recovered) = joined(&mut late, "general").await;
    assert!(!recovered);
    let page = usize::try_from(skat_protocol::DEFAULT_HISTORY_LIMIT).unwrap();
    assert_eq!(messages.len(), history_len.min(page));
    assert_eq!(
        messages.last().map(|m| m.body.clone()),
        Some(format!("n{}", more - 1))
    );
}
