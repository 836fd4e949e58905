//! The web app on a node with a data dir (issue 23): a message posted in the browser is shown
//! again after the node restarted (a process, stopped by SIGTERM) and the page reloaded.

use skat_testkit::TempDir;

use super::{Driver, bundle, common, open_at, say, wait_messages, wait_text};
use common::process::NodeProcess;

#[tokio::test]
async fn a_message_survives_a_node_restart_and_a_page_reload() {
    let static_dir = bundle().to_string_lossy().into_owned();
    let extra = [("SKAT_STATIC_DIR", static_dir.as_str())];
    let data = TempDir::new("e2e-durable").unwrap();
    let logs = TempDir::new("e2e-durable-logs").unwrap();
    let addr = common::free_addr();
    let mut node = NodeProcess::embedded("durable-a", addr, data.path(), logs.path(), &extra).await;
    let driver = Driver::start().await;
    let page = driver.browser().await;
    open_at(&page, addr, "alice").await;
    say(&page, "kept on disk").await;
    wait_messages(&page, "the message confirmed", |m| m == ["kept on disk"]).await;

    assert!(node.terminate().await.success());
    let _node = NodeProcess::embedded("durable-b", addr, data.path(), logs.path(), &extra).await;
    page.refresh().await.unwrap();
    wait_text(&page, "#status", "Connected", |t| t == "Connected").await;
    wait_messages(&page, "the message after the restart and the reload", |m| {
        m == ["kept on disk"]
    })
    .await;
    page.close().await.unwrap();
}
