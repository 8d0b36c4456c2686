//! The staff web app in a real browser (headless Chromium): a prospect's request for a person
//! reaches the open inbox live; a salesperson claims it while a colleague watches the claim
//! happen, replies (the fake Graph API receives exactly that text for that number) and releases
//! it; outside WhatsApp's 24-hour window the reply box offers an approved template; a marketer
//! uploads Markdown and PDF files, follows their progress and errors, tests a question, replaces
//! and deletes documents; a salesperson cannot open the knowledge manager, and the pages fit a
//! phone's width. Each browser keeps a screenshot of its final state under
//! `target/browser-screenshots/`.

use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use parley::domain::ManualClock;
use serde_json::json;

use crate::browser::{Browser, PATIENCE};
use crate::harness::{Backends, PHONE_NUMBER_ID, Spawn, TestApp, whatsapp_texts};
use crate::webapp::{PASSWORD, create_staff};

/// One of these scenarios at a time: each drives one or two Chromium processes, and the machines
/// running the suite have few cores to share with the rest of it.
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Signs in through the form.
async fn sign_in(browser: &Browser, app: &TestApp, email: &str) {
    browser.open(&app.url("/login")).await;
    browser.fill("Email", email).await;
    browser.fill("Password", PASSWORD).await;
    browser.click("Sign in").await;
    browser.button("Sign out").await;
}

async fn current_path(browser: &Browser) -> String {
    browser
        .client
        .current_url()
        .await
        .unwrap()
        .path()
        .to_owned()
}

/// Waits until the page's path starts with `prefix`.
async fn wait_for_path(browser: &Browser, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let path = current_path(browser).await;
        if path.starts_with(prefix) {
            return path;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached {prefix}; at {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn prospect_says(app: &TestApp, wa: &str, wamid: &str, text: &str) {
    let response = app
        .post_whatsapp(&whatsapp_texts(wa, &[(wamid, text)]))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_appears_live_is_claimed_while_a_colleague_watches_answered_and_released() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let Some(priya) = Browser::start("webapp-inbox-priya").await else {
        return;
    };
    let Some(arjun) = Browser::start("webapp-inbox-arjun").await else {
        return;
    };
    let started = std::time::Instant::now();
    let app = TestApp::embedded().await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;
    create_staff(&app, "arjun@skyline.example", "Arjun", "sales").await;
    sign_in(&priya, &app, "priya@skyline.example").await;
    sign_in(&arjun, &app, "arjun@skyline.example").await;
    for browser in [&priya, &arjun] {
        assert_eq!(current_path(browser).await, "/inbox");
        browser
            .wait_for_text("Live: the queue updates by itself.")
            .await;
        browser.wait_for_text("Nobody is waiting.").await;
    }

    // The prospect asks for a person: both open inboxes show it without a reload.
    let wa = "919800007001";
    let asked = std::time::Instant::now();
    prospect_says(&app, wa, "wamid.inbox.1", "I want to talk to a human").await;
    for browser in [&priya, &arjun] {
        let row = browser.by_role("row", "Asha").await;
        let text = row.text().await.unwrap();
        assert!(text.contains("whatsapp"), "{text}");
        assert!(text.contains("explicit request"), "{text}");
        assert!(text.contains("Waiting (#1)"), "{text}");
    }
    let live_after = asked.elapsed();

    // Priya claims it; Arjun's inbox shows the claim as it happens.
    let claimed = std::time::Instant::now();
    priya.click("Claim").await;
    arjun.wait_for_text("Claimed by Priya").await;
    let claim_seen_after = claimed.elapsed();
    arjun.screenshot("claim-seen").await;
    let path = wait_for_path(&priya, "/inbox/").await;
    let handoff_id = path.trim_start_matches("/inbox/").to_owned();
    assert!(
        arjun
            .by_role("row", "Asha")
            .await
            .text()
            .await
            .unwrap()
            .contains("Open"),
        "a claimed handoff can no longer be claimed"
    );

    // The conversation with its history and context card.
    priya.wait_for_text("claimed by you (Priya)").await;
    let history = priya
        .wait_xpath("//ol[@aria-label='Conversation']")
        .await
        .text()
        .await
        .unwrap();
    assert!(history.contains("I want to talk to a human"), "{history}");
    assert!(
        history.contains("Prospect") && history.contains("Bot"),
        "{history}"
    );
    let card = priya
        .wait_xpath("//aside[@aria-label='Context card']")
        .await
        .text()
        .await
        .unwrap();
    assert!(card.contains("explicit request"), "{card}");
    assert!(card.contains("Lead"), "{card}");

    // The reply goes out through WhatsApp to that number, exactly as typed.
    let reply = "Hello Asha, this is Priya from Skyline. How can I help you today?";
    priya.fill("Reply", reply).await;
    priya.click("Send reply").await;
    priya.wait_for_text("Sent to the prospect's channel.").await;
    let texts = app.wait_for_texts_to(wa, 2).await;
    assert_eq!(texts.last().unwrap(), reply);
    let recipients: Vec<String> = app
        .graph
        .sent_messages()
        .iter()
        .map(|r| r.body["to"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(recipients.iter().all(|to| to == wa), "{recipients:?}");
    // It shows in the history, with its delivery tick, without a reload.
    let sent = priya
        .wait_xpath(&format!(
            "//ol[@aria-label='Conversation']/li[contains(., {})]//*[@aria-label='Sent' or @aria-label='Delivered' or @aria-label='Read']",
            crate::browser::xpath_literal(reply)
        ))
        .await;
    assert!(!sent.text().await.unwrap().is_empty());
    // WhatsApp reports the reply read: the tick turns to "Read" without a reload.
    let wamid = app
        .graph
        .sent_messages()
        .iter()
        .filter(|r| r.body["text"]["body"] == reply)
        .find_map(|r| r.wamid.clone())
        .expect("the reply's message id");
    let receipt = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"{PHONE_NUMBER_ID}"}},"statuses":[{{"id":"{wamid}","status":"read","timestamp":"1700000100","recipient_id":"{wa}"}}]}}}}]}}]}}"#
    );
    assert_eq!(app.post_whatsapp(receipt.as_bytes()).await.status(), 200);
    priya
        .wait_xpath(&format!(
            "//ol[@aria-label='Conversation']/li[contains(., {})]//*[@aria-label='Read']",
            crate::browser::xpath_literal(reply)
        ))
        .await;
    priya.screenshot("replied").await;

    // Release, with a note: back to the inbox, which is empty again for both.
    priya
        .fill("Note for the record", "Sent the price list; call tomorrow")
        .await;
    priya.click("Release to bot").await;
    wait_for_path(&priya, "/inbox").await;
    priya.wait_for_text("Nobody is waiting.").await;
    arjun.wait_for_text("Nobody is waiting.").await;
    let released = app.state.store.handoff(&handoff_id).await.unwrap().unwrap();
    assert_eq!(released.status, "released");
    assert_eq!(
        released.release_note.as_deref(),
        Some("Sent the price list; call tomorrow")
    );
    eprintln!(
        "inbox scenario: webhook to both inboxes {live_after:?}, claim to the colleague's inbox \
         {claim_seen_after:?}, whole scenario {:?}",
        started.elapsed()
    );
    priya.finish().await;
    arjun.finish().await;
}

fn config_with_template(dir: &std::path::Path) -> String {
    let path = dir.join("parley.toml");
    std::fs::write(
        &path,
        r#"
[tenants.default.templates.visit_reminder]
language = "en"
body = "Hi {{1}}, a reminder about your visit to {{2}}."
"#,
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_24_hour_window_the_reply_box_explains_and_offers_an_approved_template() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let Some(browser) = Browser::start("webapp-window-template").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(
        "2026-11-22T06:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(),
    );
    let app = TestApp::start(
        Spawn::new(Backends::Embedded)
            .with_clock(Arc::new(clock.clone()))
            .with_env("PARLEY_CONFIG", &config_with_template(dir.path())),
    )
    .await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;
    let wa = "919800007101";
    prospect_says(&app, wa, "wamid.window.1", "Can I speak to a person?").await;
    app.wait_for_texts_to(wa, 1).await;
    clock.advance_ms(25 * 60 * 60 * 1000);

    sign_in(&browser, &app, "priya@skyline.example").await;
    browser
        .wait_for_text("Live: the queue updates by itself.")
        .await;
    browser.by_role("row", "Asha").await;
    browser.click("Claim").await;
    wait_for_path(&browser, "/inbox/").await;
    browser.fill("Reply", "Are you still interested?").await;
    browser.click("Send reply").await;
    let alert = browser
        .wait_xpath("//*[@role='alert' and contains(., 'more than 24 hours')]")
        .await;
    assert!(alert.text().await.unwrap().contains("approved template"));
    // The refused message is in the history, marked as not sent.
    browser
        .wait_xpath("//ol[@aria-label='Conversation']/li[contains(., 'Are you still interested?')]//*[@aria-label='Not sent']")
        .await;
    browser.click("Pick an approved template").await;
    let template = browser.field("Template").await;
    assert_eq!(
        template.prop("value").await.unwrap().as_deref(),
        Some("visit_reminder")
    );
    browser.wait_for_text("a reminder about your visit").await;
    browser
        .fill(
            "Template parameters (one per line)",
            "Asha\nSkyline Meadows",
        )
        .await;
    browser.click("Send template").await;
    browser
        .wait_for_text("Sent to the prospect's channel.")
        .await;
    let sends = app.wait_for_sends_to(wa, 2).await;
    let last = sends.last().unwrap();
    assert_eq!(last["type"], "template");
    assert_eq!(last["template"]["name"], "visit_reminder");
    assert_eq!(
        last["template"]["components"][0]["parameters"],
        json!([{"type": "text", "text": "Asha"}, {"type": "text", "text": "Skyline Meadows"}])
    );
    assert!(
        !app.texts_sent_to(wa)
            .iter()
            .any(|t| t == "Are you still interested?"),
        "the refused text never left"
    );
    browser.finish().await;
}

const MARKDOWN: &str = "# Skyline Orchid amenities\n\n## Pool\n\nThe Skyline Orchid clubhouse has a saltwater lap pool, open every day from 6 am to 10 pm.\n";

/// Statuses of the upload rows, by file name.
async fn upload_statuses(browser: &Browser) -> Vec<(String, String)> {
    let rows = browser
        .client
        .find_all(Locator::XPath("//ul[@aria-label='Uploads']/li"))
        .await
        .unwrap();
    let mut out = Vec::new();
    for row in rows {
        let name = row.attr("data-file").await.unwrap().unwrap_or_default();
        let status = row
            .find(Locator::XPath(".//*[@role='status']"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        out.push((name, status));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketer_uploads_markdown_and_pdf_follows_each_file_tests_a_question_replaces_and_deletes()
 {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let Some(browser) = Browser::start("webapp-knowledge").await else {
        return;
    };
    let app = TestApp::embedded().await;
    create_staff(&app, "maya@skyline.example", "Maya", "marketer").await;
    sign_in(&browser, &app, "maya@skyline.example").await;
    assert_eq!(current_path(&browser).await, "/knowledge");
    browser.by_role("heading", "Upload documents").await;

    // A Markdown file dropped on the drop zone (a real drop event carrying a file)...
    browser
        .client
        .execute(
            "const data = new DataTransfer();
             data.items.add(new File([arguments[0]], 'orchid-amenities.md', {type: 'text/markdown'}));
             const zone = document.querySelector('[aria-label=\"Drop files here\"]');
             zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));",
            vec![json!(MARKDOWN)],
        )
        .await
        .unwrap();
    // ...and two PDFs chosen with the file picker, one of them damaged.
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/knowledge");
    let paths = format!(
        "{}\n{}",
        data.join("price-list.pdf").display(),
        data.join("malformed.pdf").display()
    );
    browser
        .field("Choose files")
        .await
        .send_keys(&paths)
        .await
        .unwrap();

    // Each file has its own progress bar and its own outcome.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let statuses = loop {
        let statuses = upload_statuses(&browser).await;
        let finished = statuses.len() == 3
            && statuses
                .iter()
                .all(|(_, s)| s.starts_with("Ready") || s.starts_with("Error"));
        if finished {
            break statuses;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "uploads never finished: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status_of = |name: &str| {
        statuses
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no upload row for {name}: {statuses:?}"))
    };
    assert!(status_of("orchid-amenities.md").starts_with("Ready: 1 passages"));
    assert!(status_of("price-list.pdf").starts_with("Ready: 2 passages"));
    assert!(
        status_of("malformed.pdf").contains("damaged"),
        "{}",
        status_of("malformed.pdf")
    );
    for name in ["orchid-amenities.md", "price-list.pdf", "malformed.pdf"] {
        let bar = browser
            .wait_xpath(&format!(
                "//progress[@aria-label='Upload progress of {name}']"
            ))
            .await;
        assert_eq!(bar.attr("value").await.unwrap().as_deref(), Some("100"));
    }

    // The document list shows the new documents with their version, tags, chunks and status.
    let row = browser.by_role("row", "orchid-amenities.md").await;
    let cells = row.text().await.unwrap();
    assert!(cells.contains("faq") && cells.contains("ready"), "{cells}");
    browser.button("Replace price-list.pdf").await;
    browser.button("Delete orchid-amenities.md").await;

    // The question panel finds the new passage and shows what the bot would reply.
    browser
        .fill("Question", "When is the saltwater lap pool open?")
        .await;
    browser.click("Ask").await;
    let passages = browser
        .wait_xpath("//ol[@aria-label='Passages found']")
        .await
        .text()
        .await
        .unwrap();
    assert!(passages.contains("orchid-amenities.md"), "{passages}");
    assert!(passages.contains("6 am to 10 pm"), "{passages}");
    assert!(passages.contains("score"), "{passages}");
    let reply = browser
        .wait_xpath("//blockquote[@aria-label='Bot reply' or @aria-label='Bot draft']")
        .await
        .text()
        .await
        .unwrap();
    assert!(reply.contains("lap pool"), "{reply}");

    // The PDF's passage is found too, with its source.
    browser
        .fill("Question", "How much is a covered parking slot?")
        .await;
    browser.click("Ask").await;
    browser.wait_for_text("price-list.pdf (page 2)").await;

    // Replace: a new file uploaded as a new version of the document, which answers at once.
    let dir = tempfile::tempdir().unwrap();
    let revised = dir.path().join("orchid-revised.md");
    std::fs::write(
        &revised,
        MARKDOWN.replace("from 6 am to 10 pm", "from 5 am to 11 pm"),
    )
    .unwrap();
    browser
        .field("New version of orchid-amenities.md")
        .await
        .send_keys(&revised.display().to_string())
        .await
        .unwrap();
    browser
        .wait_xpath(
            "//table[@aria-label='Documents']//tr[td[1][normalize-space(.)='orchid-amenities.md'] and td[2][normalize-space(.)='2']]",
        )
        .await;
    browser
        .fill("Question", "When is the saltwater lap pool open?")
        .await;
    browser.click("Ask").await;
    browser.wait_for_text("from 5 am to 11 pm").await;
    assert!(!browser.page_text().await.contains("from 6 am to 10 pm"));

    // Delete, after confirming: the document leaves the list.
    browser.click("Delete malformed.pdf").await;
    browser.client.accept_alert().await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while browser
        .client
        .find(Locator::XPath(
            "//table[@aria-label='Documents']//td[normalize-space(.)='malformed.pdf']",
        ))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "malformed.pdf was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesperson_cannot_open_the_knowledge_pages() {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let Some(browser) = Browser::start("webapp-sales-no-knowledge").await else {
        return;
    };
    let app = TestApp::embedded().await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;
    sign_in(&browser, &app, "priya@skyline.example").await;
    let nav = browser
        .wait_xpath("//nav[@aria-label='Main']")
        .await
        .text()
        .await
        .unwrap();
    assert!(nav.contains("Inbox") && !nav.contains("Knowledge"), "{nav}");
    browser.open(&app.url("/knowledge")).await;
    browser.by_role("heading", "Not allowed").await;
    browser
        .wait_for_text("does not give access to this page")
        .await;
    assert!(!browser.page_text().await.contains("Upload documents"));

    // At phone width the pages fit the screen: no sideways scrolling.
    browser.client.set_window_size(390, 844).await.unwrap();
    for path in ["/inbox", "/conversations", "/leads", "/knowledge"] {
        browser.open(&app.url(path)).await;
        browser.button("Sign out").await;
        let overflow = browser
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{path} is wider than a phone by {overflow}px"
        );
    }
    browser.finish().await;
}
