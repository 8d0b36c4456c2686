//! The staff web app over plain HTTP: the session cookie's flags, CSRF on forms and on
//! cookie-authenticated API calls, what each role may open, the sign-in rate limit, and the
//! conversation and lead lists' filters. (The browser scenarios are in `webapp_browser`.)

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE, X_FRAME_OPTIONS};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, Backends, Spawn, TestApp, on_both_backends, whatsapp_texts};

on_both_backends!(conversations_and_leads_are_filtered_and_searched_by_number);

pub const PASSWORD: &str = "a long enough password";

/// Creates an account with the admin token.
pub async fn create_staff(app: &TestApp, email: &str, name: &str, role: &str) {
    let response = app
        .http
        .post(app.url("/api/v1/staff"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"email": email, "name": name, "role": role, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

/// A client that shows redirects instead of following them, and keeps no cookies.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of `name="<field>" value="..."` in a page.
fn hidden(html: &str, field: &str) -> String {
    let marker = format!("name=\"{field}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {field} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The `name=value` of a cookie a response sets, and the whole `Set-Cookie` line.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|line| (line.split(';').next().unwrap().to_owned(), line.to_owned()))
}

/// A browser-like session over plain HTTP.
pub struct WebSession {
    http: reqwest::Client,
    base: String,
    /// `parley_session=...`
    pub cookie: String,
    /// The session's CSRF token, as pages embed it.
    pub csrf: String,
}

/// What the sign-in form answered.
struct LoginAttempt {
    status: StatusCode,
    session_cookie: Option<(String, String)>,
    location: Option<String>,
}

async fn submit_login(app: &TestApp, email: &str, password: &str) -> LoginAttempt {
    let http = client();
    let form = http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let (login_cookie, _) = set_cookie(&form, "parley_login_csrf").expect("login CSRF cookie");
    let token = hidden(&form.text().await.unwrap(), "csrf");
    let response = http
        .post(app.url("/login"))
        .header("cookie", login_cookie)
        .form(&[("email", email), ("password", password), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    LoginAttempt {
        status: response.status(),
        session_cookie: set_cookie(&response, "parley_session"),
        location: response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned()),
    }
}

impl WebSession {
    /// Signs in through the sign-in form, as a browser does.
    pub async fn sign_in(app: &TestApp, email: &str) -> Self {
        let attempt = submit_login(app, email, PASSWORD).await;
        assert_eq!(attempt.status, StatusCode::SEE_OTHER);
        let (cookie, _) = attempt.session_cookie.expect("a session cookie");
        let mut session = Self {
            http: client(),
            base: app.base.clone(),
            cookie,
            csrf: String::new(),
        };
        let page = session.get("/").await;
        let home = page.headers()[LOCATION].to_str().unwrap().to_owned();
        let html = session.get(&home).await.text().await.unwrap();
        session.csrf = hidden(&html, "csrf");
        session
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A JSON call with the cookie, and with the CSRF header when `csrf` is set.
    pub async fn api(&self, method: &str, path: &str, body: Value, csrf: bool) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .json(&body);
        if csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_secure_http_only_strict_cookie_and_signing_out_ends_the_session() {
    let app = TestApp::embedded().await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;

    let attempt = submit_login(&app, "priya@skyline.example", PASSWORD).await;
    assert_eq!(attempt.status, StatusCode::SEE_OTHER);
    assert_eq!(attempt.location.as_deref(), Some("/inbox"));
    let (cookie, line) = attempt.session_cookie.unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(flag), "{flag} missing in {line}");
    }

    let http = client();
    let inbox = http
        .get(app.url("/inbox"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.status(), 200);
    assert_eq!(inbox.headers()[X_FRAME_OPTIONS], "DENY");
    let policy = inbox.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'"));
    let html = inbox.text().await.unwrap();
    assert!(html.contains("<h1>Inbox</h1>"));
    let csrf = hidden(&html, "csrf");

    // The widget page stays frameable: the app's headers are only on the app's pages.
    let widget = http.get(app.url("/widget")).send().await.unwrap();
    assert!(widget.headers().get(X_FRAME_OPTIONS).is_none());

    // Signing out needs the form's token; then the cookie no longer opens anything.
    let refused = http
        .post(app.url("/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let out = http
        .post(app.url("/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let (_, cleared) = set_cookie(&out, "parley_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = http
        .get(app.url("/inbox"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[LOCATION], "/login?next=%2Finbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_or_a_cookie_api_call_without_the_csrf_token_is_refused() {
    let app = TestApp::embedded().await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;

    // The sign-in form without its token (or with a token not matching its cookie).
    let http = client();
    let response = http
        .post(app.url("/login"))
        .form(&[("email", "priya@skyline.example"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(set_cookie(&response, "parley_session").is_none());
    let response = http
        .post(app.url("/login"))
        .header("cookie", "parley_login_csrf=aaaa")
        .form(&[
            ("email", "priya@skyline.example"),
            ("password", PASSWORD),
            ("csrf", "bbbb"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // The API with the cookie: reads work, changes need the header.
    let session = WebSession::sign_in(&app, "priya@skyline.example").await;
    let (status, body) = session
        .api("GET", "/api/v1/handoffs", Value::Null, false)
        .await;
    assert_eq!(status, 200, "{body}");
    let claim = "/api/v1/handoffs/00000000-0000-0000-0000-000000000000/claim";
    // Without the header the cookie does not authenticate a change: the call is anonymous.
    let (status, body) = session.api("POST", claim, json!({}), false).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = session.api("POST", claim, json!({}), true).await;
    assert_eq!(status, 404, "past the CSRF check: {body}");
    // A token that is not this session's is refused outright.
    let other = WebSession {
        csrf: "0".repeat(64),
        ..WebSession::sign_in(&app, "priya@skyline.example").await
    };
    let (status, body) = other.api("POST", claim, json!({}), true).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "csrf");
    // Public endpoints keep working for someone signed in (the web chat on the same site).
    let (status, body) = session
        .api(
            "POST",
            "/api/v1/web/messages",
            json!({"tenant": "default", "visitor_id": "visitor-csrf-test-0001", "text": "Hello"}),
            false,
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_each_person_sees_and_may_open() {
    let app = TestApp::embedded().await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;
    create_staff(&app, "maya@skyline.example", "Maya", "marketer").await;
    let sales = WebSession::sign_in(&app, "priya@skyline.example").await;
    let marketer = WebSession::sign_in(&app, "maya@skyline.example").await;

    // Sales: the inbox, not the knowledge manager (a 403 page, and 403 from its API).
    let inbox = sales.get("/inbox").await.text().await.unwrap();
    assert!(inbox.contains(">Leads</a>"));
    assert!(!inbox.contains(">Knowledge</a>"));
    let knowledge = sales.get("/knowledge").await;
    assert_eq!(knowledge.status(), 403);
    assert!(
        knowledge
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        knowledge
            .text()
            .await
            .unwrap()
            .contains("does not give access")
    );
    let (status, _) = sales
        .api("GET", "/api/v1/knowledge/documents", Value::Null, false)
        .await;
    assert_eq!(status, 403);

    // Marketers: the knowledge manager, not the inbox.
    let start = marketer.get("/").await;
    assert_eq!(start.headers()[LOCATION], "/knowledge");
    let page = marketer.get("/knowledge").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("Test a question") && !page.contains(">Inbox</a>"));
    assert_eq!(marketer.get("/inbox").await.status(), 403);
    assert_eq!(marketer.get("/leads").await.status(), 403);
    let (status, _) = marketer
        .api("GET", "/api/v1/handoffs", Value::Null, false)
        .await;
    assert_eq!(status, 403);
    let (status, body) = marketer
        .api("GET", "/api/v1/knowledge/documents", Value::Null, false)
        .await;
    assert_eq!(status, 200, "{body}");

    // Nobody signed in: every page sends to the sign-in form.
    let anonymous = client().get(app.url("/knowledge")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[LOCATION], "/login?next=%2Fknowledge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_per_account_and_per_address() {
    let app = TestApp::embedded().await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;
    create_staff(&app, "arjun@skyline.example", "Arjun", "sales").await;

    for _ in 0..5 {
        let attempt = submit_login(&app, "priya@skyline.example", "wrong password!").await;
        assert_eq!(attempt.status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is not checked, in the form and in the API.
    let attempt = submit_login(&app, "priya@skyline.example", PASSWORD).await;
    assert_eq!(attempt.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(attempt.session_cookie.is_none());
    let api = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "priya@skyline.example", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 429);
    assert_eq!(
        api.json::<Value>().await.unwrap()["error"],
        "too_many_attempts"
    );

    // Another account from the same address still signs in...
    let attempt = submit_login(&app, "arjun@skyline.example", PASSWORD).await;
    assert_eq!(attempt.status, StatusCode::SEE_OTHER);
    // ...until the address itself has failed too often, over any accounts.
    for i in 0..15 {
        let email = format!("guess{i}@skyline.example");
        assert_eq!(
            submit_login(&app, &email, "wrong password!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let attempt = submit_login(&app, "arjun@skyline.example", PASSWORD).await;
    assert_eq!(attempt.status, StatusCode::TOO_MANY_REQUESTS);
}

async fn conversations_and_leads_are_filtered_and_searched_by_number(backends: Backends) {
    let app = TestApp::start(Spawn::new(backends)).await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;
    let session = WebSession::sign_in(&app, "priya@skyline.example").await;
    let waiting = "919800002001";
    let chatting = "919811112002";
    for (wa, id, text) in [
        (waiting, "wamid.list.1", "I want to talk to a human"),
        (
            chatting,
            "wamid.list.2",
            "What is the price of a 2 BHK apartment?",
        ),
    ] {
        let response = app.post_whatsapp(&whatsapp_texts(wa, &[(id, text)])).await;
        assert_eq!(response.status(), 200);
        app.wait_for_texts_to(wa, 1).await;
    }
    let rows = |html: &str| html.matches("<a href=\"/conversations/").count();

    let all = session.get("/conversations").await.text().await.unwrap();
    assert_eq!(rows(&all), 2, "{all}");
    let by_number = session
        .get("/conversations?q=%2B91+98111")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&by_number), 1);
    let queued = session
        .get("/conversations?state=queued&channel=whatsapp")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&queued), 1);
    let none = session
        .get("/conversations?q=nobody-here")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&none), 0);
    assert!(none.contains("No conversation matches"));
    let future = session
        .get("/conversations?from=2999-01-01")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&future), 0);
    let bad = session.get("/conversations?from=yesterday").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("must be a date"));

    // Leads: both prospects are leads; a search by number finds one, and its page has history.
    let leads = session.get("/leads").await.text().await.unwrap();
    assert_eq!(leads.matches("<a href=\"/leads/").count(), 2, "{leads}");
    let one = session.get("/leads?q=98111").await.text().await.unwrap();
    let marker = "<a href=\"/leads/";
    assert_eq!(one.matches(marker).count(), 1, "{one}");
    let start = one.find(marker).unwrap() + marker.len();
    let id = one[start..].split('"').next().unwrap();
    let lead = session.get(&format!("/leads/{id}")).await;
    assert_eq!(lead.status(), 200);
    let lead = lead.text().await.unwrap();
    assert!(lead.contains("Score history"));
    assert!(lead.contains("<td>"), "at least one history row: {lead}");
    let tier_filtered = session
        .get("/leads?tier=invalid")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(tier_filtered.matches("<a href=\"/leads/").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_consent_history_is_shown_and_only_administrators_export_the_ledger() {
    let app = TestApp::embedded().await;
    create_staff(&app, "priya@skyline.example", "Priya", "sales").await;
    create_staff(&app, "root@skyline.example", "Ravi", "admin").await;
    let wa = "919800002101";
    let response = app
        .post_whatsapp(&whatsapp_texts(wa, &[("wamid.consent.1", "STOP")]))
        .await;
    assert_eq!(response.status(), 200);
    app.wait_for_texts_to(wa, 1).await;
    let conversation = crate::harness::whatsapp_conversation(wa);
    let contact = app
        .state
        .store
        .conversation(parley::domain::ConversationId::parse(&conversation).unwrap())
        .await
        .unwrap()
        .unwrap()
        .contact_id;

    let sales = WebSession::sign_in(&app, "priya@skyline.example").await;
    let page = sales.get(&format!("/contacts/{contact}/consent")).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("opted out"), "{page}");
    assert!(page.contains("<td>opt out</td>"), "{page}");
    assert!(!page.contains("consent ledger (CSV)"));
    let export = sales.get("/api/v1/consent/export").await;
    assert_eq!(export.status(), 403);
    assert_eq!(sales.get("/contacts/not-an-id/consent").await.status(), 404);

    let admin = WebSession::sign_in(&app, "root@skyline.example").await;
    let page = admin
        .get(&format!("/contacts/{contact}/consent"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("consent ledger (CSV)"));
    let export = admin.get("/api/v1/consent/export").await;
    assert_eq!(export.status(), 200);
    assert!(export.text().await.unwrap().contains("opt_out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_of_another_business_sign_in_to_it_and_see_only_its_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, "[tenants.acme]\nname = \"Acme Homes\"\n").unwrap();
    let app = TestApp::start(
        Spawn::new(Backends::Embedded).with_env("PARLEY_CONFIG", &config.display().to_string()),
    )
    .await;
    let response = app
        .http
        .post(app.url("/api/v1/staff"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"email": "sam@acme.example", "name": "Sam", "role": "sales",
                      "password": PASSWORD, "tenant": "acme"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let wa = "919800002201";
    let said = app
        .post_whatsapp(&whatsapp_texts(
            wa,
            &[("wamid.tenant.1", "I want to talk to a human")],
        ))
        .await;
    assert_eq!(said.status(), 200);
    app.wait_for_texts_to(wa, 1).await;

    // The form for Acme carries its tenant; without it the account is not found.
    let http = client();
    let form = http
        .get(app.url("/login?tenant=acme"))
        .send()
        .await
        .unwrap();
    let (login_cookie, _) = set_cookie(&form, "parley_login_csrf").unwrap();
    let html = form.text().await.unwrap();
    assert_eq!(hidden(&html, "tenant"), "acme");
    let token = hidden(&html, "csrf");
    let post = |tenant: Option<&'static str>| {
        let mut fields = vec![
            ("email", "sam@acme.example".to_owned()),
            ("password", PASSWORD.to_owned()),
            ("csrf", token.clone()),
        ];
        if let Some(tenant) = tenant {
            fields.push(("tenant", tenant.to_owned()));
        }
        http.post(app.url("/login"))
            .header("cookie", &login_cookie)
            .form(&fields)
            .send()
    };
    assert_eq!(post(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let signed_in = post(Some("acme")).await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let (cookie, _) = set_cookie(&signed_in, "parley_session").unwrap();

    // The default business's handoff and conversation are not Acme's.
    let handoffs: Value = http
        .get(app.url("/api/v1/handoffs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(handoffs["handoffs"], json!([]));
    let list = http
        .get(app.url("/conversations"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("No conversation matches"), "{list}");
    let conversation = crate::harness::whatsapp_conversation(wa);
    let page = http
        .get(app.url(&format!("/conversations/{conversation}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    let api = http
        .get(app.url(&format!("/api/v1/conversations/{conversation}/messages")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
}
