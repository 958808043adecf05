//! Console scenarios in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, with fantoccini as the client) against the real binary, plus the helpers those
//! scenarios share. tests/run.sh installs `chromium` and `chromium-driver`; without them these
//! tests fail rather than skip, so a CI machine that lost them cannot pass silently.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::*;

/// How long a page gets to show an element before a test gives up on it.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A headless Chromium session and the chromedriver that runs it; both go away with it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// Chromium's profile and temporary files: ours rather than chromedriver's so that they are
    /// removed even when a failed test kills Chromium before it can clean up.
    _scratch: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a port it picks itself and opens a 1400x900 headless session.
    pub async fn start() -> Browser {
        let scratch = tempfile::tempdir().expect("browser scratch dir");
        let (profile, tmp) = (scratch.path().join("profile"), scratch.path().join("tmp"));
        std::fs::create_dir(&tmp).expect("browser tmp dir");
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .env("TMPDIR", &tmp)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Chromium's processes join chromedriver's group, so dropping us can end them all.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run chromedriver ({e}); the browser tests need Debian's `chromium` \
                     and `chromium-driver` packages, which tests/run.sh installs"
                )
            });
        let port = driver_port(&mut driver).await;
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_until_ready(&webdriver).await;

        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": [
                    "--headless=new",
                    // CI runs as root, where Chromium refuses to start with its sandbox.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1400,900",
                    "--no-first-run",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("capabilities are an object")
        };
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&webdriver),
        )
        .await
        .expect("chromedriver opened a session within 60 s")
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver could not start Chromium ({e}); is Debian's `chromium` package \
                 installed? tests/run.sh installs it"
            )
        });
        Browser {
            client,
            driver,
            _scratch: scratch,
        }
    }

    /// Ends the session, so Chromium exits and removes its files, then chromedriver.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        self.kill_group();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.driver.wait()).await;
    }

    /// Kills chromedriver and every Chromium process it started, which share its process group.
    fn kill_group(&self) {
        // Once chromedriver has been reaped its id is gone, and a reused one is never hit.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Browser {
    /// After a failed assertion nothing ends the session, so Chromium would outlive the test.
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Reads the port from chromedriver's "started successfully on port N." line.
async fn driver_port(driver: &mut Child) -> u16 {
    let stdout = driver.stdout.take().expect("chromedriver stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return rest.trim_end_matches('.').parse::<u16>().ok();
            }
            seen.push(line);
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("chromedriver did not report its port; it printed {seen:?}"));
    // Keep draining stdout so chromedriver never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    port
}

/// Polls chromedriver's /status until it says it is ready for a new session.
async fn wait_until_ready(webdriver: &str) {
    let http = reqwest::Client::new();
    let url = format!("{webdriver}/status");
    let ready = eventually(Duration::from_secs(10), || async {
        let Ok(resp) = http.get(&url).send().await else {
            return false;
        };
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        body["value"]["ready"] == true
    })
    .await;
    assert!(
        ready.is_some(),
        "chromedriver at {webdriver} never became ready"
    );
}

/// Signs in through the console's login form; returns once the form's answer has loaded,
/// whichever page that is.
pub async fn login(client: &Client, base: &str, user: &str, password: &str) {
    client
        .goto(&format!("{base}/login"))
        .await
        .expect("open the login page");
    fill(client, "input[name=username]", user).await;
    fill(client, "input[name=password]", password).await;
    click(client, "form:has(input[name=password]) button").await;
}

/// Saves a PNG of the viewport to `<target>/screenshots/<name>.png`; returns the path.
pub async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("screenshot");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(target)
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    path
}

/// Replaces the value of the input that `css` selects.
pub async fn fill(client: &Client, css: &str, value: &str) {
    let input = wait_for(client, css, PAGE_TIMEOUT).await;
    input
        .clear()
        .await
        .unwrap_or_else(|e| panic!("clear {css}: {e}"));
    input
        .send_keys(value)
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

/// Clicks the element that `css` selects; a navigation it starts has loaded when this returns.
pub async fn click(client: &Client, css: &str) {
    wait_for(client, css, PAGE_TIMEOUT)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The rendered text of the element that `css` selects.
pub async fn text_of(client: &Client, css: &str) -> String {
    wait_for(client, css, PAGE_TIMEOUT)
        .await
        .text()
        .await
        .unwrap_or_else(|e| panic!("text of {css}: {e}"))
}

/// Waits up to `timeout` for an element that `css` selects; panics with the page it was on.
pub async fn wait_for(
    client: &Client,
    css: &str,
    timeout: Duration,
) -> fantoccini::elements::Element {
    match client
        .wait()
        .at_most(timeout)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(e) => {
            let url = client.current_url().await.map(|u| u.to_string());
            let title = client.title().await.unwrap_or_default();
            panic!("no {css} within {timeout:?} ({e}); on {url:?}, titled {title:?}")
        }
    }
}

/// Whether the page is wider than its viewport, so that a phone would scroll it sideways; with
/// the measurements and the innermost elements that reach past the right edge, for the message.
///
/// The viewport is `clientWidth`, not `innerWidth`: desktop Chromium draws a classic scroll bar
/// that `innerWidth` counts, which would let a page up to 15 px too wide pass.
async fn scrolls_sideways(client: &Client) -> (bool, serde_json::Value) {
    let v = client
        .execute(
            "const root = document.documentElement;
             const w = root.clientWidth;
             const over = [...document.body.querySelectorAll('*')]
               .filter(e => e.getBoundingClientRect().right > w + 0.5);
             const innermost = over.filter(e => ![...e.children].some(c => over.includes(c)));
             return {
               scrollWidth: root.scrollWidth, clientWidth: w, innerWidth: window.innerWidth,
               pastRightEdge: innermost.slice(0, 8).map(e =>
                 e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') +
                 ' ' + JSON.stringify(e.textContent.trim().slice(0, 30)) +
                 ' right=' + Math.round(e.getBoundingClientRect().right)),
             };",
            vec![],
        )
        .await
        .expect("measure the page");
    let wider = v["scrollWidth"].as_u64() > v["clientWidth"].as_u64();
    (wider, v)
}

/// A node with one pool of one member and one GSLB record: the node, its admin token and the
/// proxy port.
async fn node_with_a_pool(dir: &std::path::Path, backend: &Backend) -> (Meridian, String, u16) {
    let node = Meridian::start(&dir.join("n1")).await;
    let token = node.token().await;
    let port = free_port();
    let (status, body) = node
        .put_config(&token, config(port, &[backend], 200, 2), None)
        .await;
    assert_eq!(status, 200, "{body}");
    (node, token, port)
}

/// Every main page, for screenshots and the phone-width check.
const MAIN_PAGES: [(&str, &str); 10] = [
    ("overview", "/"),
    ("listeners", "/console/listeners"),
    ("pools", "/console/pools"),
    ("pool", "/console/pools/mesh"),
    ("gslb", "/console/gslb"),
    ("zones", "/console/zones"),
    ("cluster", "/console/cluster"),
    ("history", "/console/history"),
    ("audit", "/console/audit"),
    ("users", "/console/users"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_adds_a_member_sees_a_field_error_and_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("east", "127.0.0.1").await;
    let (node, token, _) = node_with_a_pool(dir.path(), &backend).await;
    let browser = Browser::start().await;
    let client = &browser.client;

    login(client, &node.admin, "admin", &node.initial_password()).await;
    assert_eq!(text_of(client, "#revision").await, "1");
    let url = client.current_url().await.expect("url");
    assert_eq!(url.path(), "/", "signed in lands on the overview");

    // Through the navigation to the pool's own page.
    click(client, "nav a[href='/console/pools']").await;
    click(client, "a[href='/console/pools/mesh']").await;
    let members = text_of(client, "#members").await;
    assert!(members.contains(&backend.addr.to_string()), "{members}");

    // A bad address is refused beside its field, with what was typed kept.
    fill(client, "input[name='members[1].address']", "not-an-address").await;
    click(client, "#save").await;
    let error = text_of(client, "#f-members-1--address-err").await;
    assert!(error.contains("invalid address"), "{error}");
    let kept = wait_for(client, "input[name='members[1].address']", PAGE_TIMEOUT)
        .await
        .prop("value")
        .await
        .expect("value");
    assert_eq!(kept.as_deref(), Some("not-an-address"));
    screenshot(client, "pool-field-error").await;

    // Fixed, it saves, and the page says so once.
    fill(client, "input[name='members[1].address']", "127.0.0.1:9").await;
    click(client, "#save").await;
    let flash = text_of(client, "#flash").await;
    assert!(flash.contains("Saved pool mesh (revision 2)"), "{flash}");
    let (spec, rev) = node.get_config(&token).await;
    assert_eq!(rev, 2);
    assert_eq!(spec["pools"][0]["members"][1]["address"], "127.0.0.1:9");

    // History: the revision, its diff, and a rollback after confirming.
    click(client, "nav a[href='/console/history']").await;
    let history = text_of(client, "#history").await;
    assert!(history.contains("save pools/mesh"), "{history}");
    client
        .goto(&format!("{}/console/history/1", node.admin))
        .await
        .expect("revision page");
    click(client, "#rollback").await;
    screenshot(client, "rollback-confirm").await;
    click(client, "#confirm").await;
    let flash = text_of(client, "#flash").await;
    assert!(flash.contains("Rolled back to revision 1"), "{flash}");
    let (spec, rev) = node.get_config(&token).await;
    assert_eq!(rev, 3);
    assert_eq!(
        spec["pools"][0]["members"].as_array().map(|m| m.len()),
        Some(1)
    );

    browser.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_updates_live_and_every_page_fits_a_phone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("east", "127.0.0.1").await;
    let (node, _, port) = node_with_a_pool(dir.path(), &backend).await;
    let browser = Browser::start().await;
    let client = &browser.client;
    login(client, &node.admin, "admin", &node.initial_password()).await;
    wait_for(client, "#revision", PAGE_TIMEOUT).await;

    // Traffic while the overview is open: the requests/s chart's label changes without a
    // reload, from the live feed.
    let chart = "svg[data-key='listener/web/rps'] .chart-last";
    let before = text_of(client, chart).await;
    let traffic = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for _ in 0..400 {
            let _ = via_proxy(&http, port).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let changed = eventually(Duration::from_secs(25), || async {
        let now = text_of(client, chart).await;
        now != before && now.contains("req/s") && !now.starts_with("0 ")
    })
    .await;
    traffic.abort();
    screenshot(client, "overview-live").await;
    assert!(
        changed.is_some(),
        "the chart never updated: {:?}",
        text_of(client, chart).await
    );
    let path = client.current_url().await.expect("url");
    assert_eq!(path.path(), "/", "no reload or navigation happened");

    for (name, page) in MAIN_PAGES {
        client
            .set_window_size(1400, 900)
            .await
            .expect("wide window");
        client
            .goto(&format!("{}{page}", node.admin))
            .await
            .expect("page");
        wait_for(client, "nav[aria-label=Main]", PAGE_TIMEOUT).await;
        screenshot(client, name).await;
        client
            .set_window_size(390, 844)
            .await
            .expect("phone-sized window");
        let (wider, sizes) = scrolls_sideways(client).await;
        screenshot(client, &format!("{name}-phone")).await;
        assert!(!wider, "{page} scrolls sideways on a phone: {sizes}");
    }

    browser.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_can_look_but_not_change_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = Backend::start("east", "127.0.0.1").await;
    let (node, token, _) = node_with_a_pool(dir.path(), &backend).await;
    let resp = node
        .http
        .post(node.url("/api/v1/users"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"name": "vera", "password": "viewer-password-1", "role": "viewer"}),
        )
        .send()
        .await
        .expect("create user");
    assert_eq!(resp.status(), 201);
    let browser = Browser::start().await;
    let client = &browser.client;
    login(client, &node.admin, "vera", "viewer-password-1").await;
    assert_eq!(text_of(client, "#whoami").await, "vera · viewer");

    client
        .goto(&format!("{}/console/pools/mesh", node.admin))
        .await
        .expect("pool page");
    wait_for(client, "fieldset[disabled]", PAGE_TIMEOUT).await;
    let buttons = client
        .find_all(Locator::Css("main button"))
        .await
        .expect("buttons");
    assert!(buttons.is_empty(), "a viewer sees no action buttons");
    screenshot(client, "pool-viewer").await;

    // Going to a change page directly is refused.
    client
        .goto(&format!("{}/console/pools/new", node.admin))
        .await
        .expect("new pool page");
    assert!(text_of(client, "#message")
        .await
        .contains("needs the operator role"));
    client
        .goto(&format!("{}/console/history/1/rollback", node.admin))
        .await
        .expect("rollback page");
    assert!(text_of(client, "#message")
        .await
        .contains("needs the operator role"));
    // And the user page shows no user management, only the viewer's own tokens.
    client
        .goto(&format!("{}/console/users", node.admin))
        .await
        .expect("users page");
    wait_for(client, "#h-tokens", PAGE_TIMEOUT).await;
    assert!(client.find(Locator::Css("#users")).await.is_err());
    assert_eq!(node.get_config(&token).await.1, 1, "nothing changed");

    browser.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_shows_an_error_on_the_login_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Meridian::start(&dir.path().join("n1")).await;
    let browser = Browser::start().await;
    let client = &browser.client;

    login(client, &node.admin, "admin", "not-the-password").await;
    let error = text_of(client, "#login-error").await;
    assert_eq!(error, "Wrong user name or password.");
    let url = client.current_url().await.expect("url");
    assert_eq!(url.path(), "/login", "stays on the login page");
    wait_for(client, "input[name=password]", PAGE_TIMEOUT).await;
    screenshot(client, "login-wrong-password").await;

    browser.close().await;
    node.stop().await;
}
