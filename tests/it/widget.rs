//! The embeddable web chat widget in a real browser: a tenant's page on another origin loads
//! `/widget.js`, the visitor opens the bubble, asks a question and reads the same answer WhatsApp
//! gets; the conversation survives a reload (visitor id in local storage); and a reply sent while
//! the live connection is cut shows up once it reconnects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::browser::Browser;
use crate::harness::{ADMIN_TOKEN, TestApp, whatsapp_texts};

const QUESTION: &str = "What is the price of a 2 BHK apartment?";

/// A website on another origin (`localhost` rather than `127.0.0.1`) with the widget's one line.
async fn host_site(widget_origin: &str) -> (String, JoinHandle<()>) {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><title>Skyline Habitat</title></head><body>\
         <h1>Skyline Habitat apartments</h1>\
         <script src=\"{widget_origin}/widget.js\" data-tenant=\"default\" async></script>\
         </body></html>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (format!("http://localhost:{port}/"), handle)
}

/// A TCP proxy in front of the server whose connections can be cut, as a flaky network would.
struct CuttableProxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let down = down.clone();
            let links = links.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().await.push(link);
                }
            })
        };
        Self {
            addr,
            down,
            links,
            _accept: accept,
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// Drops every open connection and refuses new ones until [`Self::restore`].
    async fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// Opens the widget from the host page and switches into its iframe.
async fn open_widget(browser: &Browser, host: &str) {
    browser.open(host).await;
    browser.click("Chat with us").await;
    let frame = browser.wait_xpath("//iframe[@title='Chat with us']").await;
    frame.enter_frame().await.expect("the chat frame opens");
    browser.field("Message").await;
}

async fn bot_answer_on_whatsapp(app: &TestApp) -> String {
    let wa = "919800000123";
    let body = whatsapp_texts(wa, &[("wamid.widget.compare", QUESTION)]);
    assert_eq!(app.post_whatsapp(&body).await.status(), 200);
    app.wait_for_texts_to(wa, 1).await.remove(0)
}

async fn visitor_conversation(browser: &Browser) -> String {
    // The widget stores the id when the server has answered the first message: wait for it.
    let deadline = tokio::time::Instant::now() + crate::browser::PATIENCE;
    loop {
        let stored: Value = browser
            .client
            .execute(
                "return JSON.parse(localStorage.getItem('parley.widget.default') || '{}')",
                vec![],
            )
            .await
            .expect("local storage readable");
        if let Some(id) = stored["conversationId"].as_str() {
            return id.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the widget never remembered its conversation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_chats_through_the_widget_on_another_site_and_comes_back_to_it() {
    let Some(browser) = Browser::start("widget-chat").await else {
        return;
    };
    let app = TestApp::embedded().await;
    let whatsapp_answer = bot_answer_on_whatsapp(&app).await;
    let (host, _site) = host_site(&app.base).await;

    open_widget(&browser, &host).await;
    browser.wait_for_text("Type STOP at any time").await;
    browser.fill("Message", QUESTION).await;
    browser.click("Send").await;
    // The same question gets the same answer as on WhatsApp.
    let first_line = whatsapp_answer.lines().next().unwrap().trim().to_owned();
    browser.wait_for_text(&first_line).await;
    let conversation = visitor_conversation(&browser).await;
    let stored = app.messages(&conversation).await;
    assert!(
        stored
            .iter()
            .any(|m| m["direction"] == "outbound" && m["text"] == whatsapp_answer.as_str()),
        "the widget's reply is the WhatsApp reply: {stored:?}"
    );

    // A reload keeps the visitor and shows the conversation so far.
    browser.client.refresh().await.unwrap();
    browser.click("Chat with us").await;
    browser
        .wait_xpath("//iframe[@title='Chat with us']")
        .await
        .enter_frame()
        .await
        .unwrap();
    browser.wait_for_text(QUESTION).await;
    browser.wait_for_text(&first_line).await;
    assert_eq!(visitor_conversation(&browser).await, conversation);
    let texts: Vec<String> = {
        let items = browser
            .client
            .find_all(Locator::XPath("//ol[@aria-label='Conversation']/li/p"))
            .await
            .unwrap();
        let mut texts = Vec::new();
        for item in items {
            texts.push(item.text().await.unwrap());
        }
        texts
    };
    assert_eq!(
        texts.iter().filter(|t| t.as_str() == QUESTION).count(),
        1,
        "each message shows once after a reload: {texts:?}"
    );
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_sent_while_the_connection_is_down_arrives_when_it_reconnects() {
    let Some(browser) = Browser::start("widget-reconnect").await else {
        return;
    };
    let app = TestApp::embedded().await;
    let upstream: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let proxy = CuttableProxy::start(upstream).await;
    let (host, _site) = host_site(&proxy.origin()).await;

    open_widget(&browser, &host).await;
    browser.fill("Message", "Hello").await;
    browser.click("Send").await;
    let conversation = visitor_conversation(&browser).await;
    app.wait_for_bot_messages(&conversation, 1).await;

    proxy.cut().await;
    browser.wait_for_text("Reconnecting").await;
    let staff_text = "Hi, this is Priya from Skyline. Are you free for a call today?";
    let sent = app
        .http
        .post(app.url(&format!("/api/v1/conversations/{conversation}/messages")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "text": staff_text }))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());
    // Delivered to the web channel while the visitor's connection is down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !app
        .messages(&conversation)
        .await
        .iter()
        .any(|m| m["text"] == staff_text && m["status"] != "queued")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "staff reply never sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !browser.page_text().await.contains(staff_text),
        "nothing can arrive while the connection is cut"
    );

    proxy.restore();
    browser.wait_for_text(staff_text).await;
    browser.finish().await;
}
