// A browser client of the JWT auth API in cookie mode (TOKEN_COOKIE_MODE=true).
//
// - The access token lives in this module's memory only: never in a cookie, localStorage or
//   sessionStorage. A reload loses it and gets a new one with a refresh.
// - The refresh token is an HttpOnly cookie (Path=/account) that this script never sees. The
//   browser sends it to /account/refresh and /account/logout, and this script repeats the
//   csrf_token cookie in the X-CSRF-Token header (double submit).
// - Refresh is single-flight. The service rotates refresh tokens with reuse detection: two
//   refreshes with the same cookie would end the session. Every caller that needs a refresh
//   waits for the one promise in flight, and a Web Lock keeps the tabs of this origin, which
//   share the cookie, from refreshing at the same time.
// - Two-factor: the page enrols the user (the otpauth:// URI becomes a QR code drawn by the
//   service as SVG, shown from a blob: URL) and, when a login answers 401
//   two-factor-required, asks for a code and sends the login again with it.

const CSRF_COOKIE = "csrf_token";
const CSRF_HEADER = "X-CSRF-Token";
const REFRESH_LOCK = "jwt-auth-demo-refresh";
const PARALLEL_CALLS = 5;
const JSON_HEADERS = { "Content-Type": "application/json" };
const TWO_FACTOR_REQUIRED = "/problems/two-factor-required";
const TOTP_CODE = /^\d{6}$/;

const $ = (id) => document.getElementById(id);

const state = {
  accessToken: null,
  claims: null,
  expiresAt: 0, // local clock, ms
  refreshAt: 0,
  sessionEndsAt: 0,
  refreshes: 0,
  refreshing: null, // the one refresh in flight
  timer: null,
  qrUrl: null, // the blob: URL of the QR code on show
};

class SessionEnded extends Error {}

function readCookie(name) {
  const prefix = `${name}=`;
  const found = document.cookie.split("; ").find((part) => part.startsWith(prefix));
  return found ? decodeURIComponent(found.slice(prefix.length)) : "";
}

function decodeClaims(token) {
  // Display only: the service checks the signature, this page just reads the payload.
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const padded = payload + "=".repeat((4 - (payload.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

function log(message) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()}  ${message}`;
  $("log").prepend(item);
}

function setStatus(message) {
  $("status").textContent = message;
}

function accept(pair) {
  const now = Date.now();
  state.accessToken = pair.access_token;
  state.claims = decodeClaims(pair.access_token);
  // expires_in counts from the server's current whole second, which may have begun up to a
  // second before this response arrived: count one second less.
  const lifetime = Math.max(0, pair.expires_in - 1) * 1000;
  state.expiresAt = now + lifetime;
  // Refresh a fifth of the lifetime before expiry, at least 1 and at most 60 seconds before.
  state.refreshAt = state.expiresAt - Math.min(60_000, Math.max(1_000, lifetime / 5));
  state.sessionEndsAt = now + pair.refresh_expires_in * 1000;
  scheduleRefresh();
  render();
}

function scheduleRefresh() {
  clearTimeout(state.timer);
  state.timer = null;
  if (!state.accessToken || !$("auto-refresh").checked) return;
  // At least a second apart, so a token capped at its session's end cannot make a busy loop.
  const delay = Math.max(1_000, state.refreshAt - Date.now());
  state.timer = setTimeout(() => refresh().catch(() => {}), delay);
}

function refresh() {
  if (!state.refreshing) {
    const work = navigator.locks
      ? navigator.locks.request(REFRESH_LOCK, refreshNow)
      : refreshNow();
    state.refreshing = work.finally(() => {
      state.refreshing = null;
    });
  }
  return state.refreshing;
}

async function refreshNow() {
  // No body: the browser sends the refresh cookie, the header proves this page sent it.
  const response = await fetch("/account/refresh", {
    method: "POST",
    headers: { [CSRF_HEADER]: readCookie(CSRF_COOKIE) },
    credentials: "same-origin",
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    const reason = problem.detail ?? "the session ended";
    endSession(`Refresh refused (${response.status}: ${reason}). Log in again.`);
    throw new SessionEnded(reason);
  }
  state.refreshes += 1;
  accept(await response.json());
  log(`Refreshed: new access token ${state.claims.jti.slice(0, 8)}`);
}

async function currentAccessToken() {
  if (state.refreshing) {
    await state.refreshing;
  } else if (state.accessToken && Date.now() >= state.refreshAt) {
    await refresh();
  }
  if (!state.accessToken) throw new SessionEnded("not logged in");
  return state.accessToken;
}

async function api(path, init = {}) {
  const send = (token) =>
    fetch(path, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } });
  const token = await currentAccessToken();
  const response = await send(token);
  if (response.status !== 401) return response;
  // Expired or cut meanwhile: one refresh, shared with every other caller, then one retry.
  if (token === state.accessToken) await refresh();
  return send(await currentAccessToken());
}

async function callTest() {
  const response = await api("/test");
  const body = await response.json();
  return `${response.status} ${typeof body === "string" ? body : body.detail}`;
}

async function login() {
  const credentials = { email: $("email").value, password: $("password").value };
  const code = $("otp-field").hidden ? "" : $("otp").value.trim();
  if (code) {
    // Six digits from the app, or a recovery code (xxxxx-xxxxx) when the app is lost.
    credentials[TOTP_CODE.test(code) ? "otp" : "recovery_code"] = code;
  }
  const response = await fetch("/account/login", {
    method: "POST",
    headers: JSON_HEADERS,
    body: JSON.stringify(credentials),
    credentials: "same-origin",
  });
  const body = await response.json();
  if (response.status === 401 && body.type === TWO_FACTOR_REQUIRED) {
    askForCode();
    return;
  }
  if (!response.ok) {
    setStatus(`Login refused (${response.status}): ${body.detail}`);
    $("otp").value = "";
    return;
  }
  $("password").value = "";
  hideCodeField();
  state.refreshes = 0;
  setStatus("");
  accept(body);
  log(`Logged in as ${state.claims.email}${code ? " with a second factor" : ""}`);
  await loadTwoFactor();
}

function askForCode() {
  // The password was right; the same login goes again with a code.
  $("otp-field").hidden = false;
  $("otp").value = "";
  $("otp").focus();
  setStatus("This account has two-factor on: enter the code from your authenticator app.");
  log("Login needs a one-time code");
}

function hideCodeField() {
  $("otp").value = "";
  $("otp-field").hidden = true;
}

function showTwoFactor(view) {
  // view: "off", "enrolling", "recovery" (codes on show), "on", or null (not known yet)
  const texts = {
    off: "Off: the password alone logs in.",
    enrolling: "Setting up: confirm with a code from the app to switch it on.",
    recovery: "On: logging in needs a code from the app.",
    on: "On: logging in needs a code from the app.",
  };
  $("tf-status").textContent = texts[view] ?? "";
  $("tf-begin-form").hidden = view !== "off";
  $("tf-enrol").hidden = view !== "enrolling";
  $("tf-recovery").hidden = view !== "recovery";
  if (view !== "enrolling") {
    forgetQr();
    $("tf-secret").textContent = "";
    $("tf-code").value = "";
  }
  if (view !== "recovery") $("tf-recovery-codes").replaceChildren();
  if (view !== "off") $("tf-password").value = "";
}

async function loadTwoFactor() {
  const response = await api("/account/me");
  if (!response.ok) return;
  const profile = await response.json();
  showTwoFactor(profile.two_factor_enabled ? "on" : "off");
}

async function beginTwoFactor() {
  const response = await api("/account/2fa/totp", {
    method: "POST",
    headers: JSON_HEADERS,
    body: JSON.stringify({ password: $("tf-password").value }),
  });
  const body = await response.json();
  $("tf-password").value = "";
  if (!response.ok) {
    setStatus(`Two-factor setup refused (${response.status}): ${body.detail}`);
    return;
  }
  showTwoFactor("enrolling");
  $("tf-secret").textContent = body.secret;
  await showQrCode(body.otpauth_uri);
  setStatus("");
  $("tf-code").focus();
  log("Two-factor setup begun: scan the QR code, then confirm with a code");
}

async function showQrCode(uri) {
  // The service draws the code (no QR library in this page, no CDN); an SVG shown through
  // <img> runs no script, and its blob: URL is allowed by img-src.
  const response = await api("/demo/qr", {
    method: "POST",
    headers: JSON_HEADERS,
    body: JSON.stringify({ uri }),
  });
  if (!response.ok) throw new Error(`the QR code was refused (${response.status})`);
  forgetQr();
  state.qrUrl = URL.createObjectURL(await response.blob());
  $("tf-qr").src = state.qrUrl;
}

function forgetQr() {
  if (state.qrUrl) URL.revokeObjectURL(state.qrUrl);
  state.qrUrl = null;
  $("tf-qr").removeAttribute("src");
}

async function confirmTwoFactor() {
  const response = await api("/account/2fa/totp/confirm", {
    method: "POST",
    headers: JSON_HEADERS,
    body: JSON.stringify({ code: $("tf-code").value.trim() }),
  });
  const body = await response.json();
  $("tf-code").value = "";
  if (!response.ok) {
    setStatus(`Code refused (${response.status}): ${body.detail}`);
    return;
  }
  showTwoFactor("recovery");
  const items = body.recovery_codes.map((code) => {
    const item = document.createElement("li");
    item.textContent = code;
    return item;
  });
  $("tf-recovery-codes").replaceChildren(...items);
  setStatus("Two-factor is on; every other session of this account has ended.");
  log("Two-factor enabled");
}

async function clearCookieSession() {
  // Ends the cookie's session (204 even when it has ended already) and clears both cookies.
  await fetch("/account/logout", {
    method: "POST",
    headers: { [CSRF_HEADER]: readCookie(CSRF_COOKIE) },
    credentials: "same-origin",
  });
}

async function logout() {
  // A refresh under way would set the cookies again after the logout cleared them.
  await state.refreshing?.catch(() => {});
  await clearCookieSession();
  endSession("Logged out.");
  log("Logged out");
}

async function logoutEverywhere() {
  const response = await api("/account/logout-all", { method: "POST" });
  if (response.status !== 204) {
    setStatus(`Log out everywhere failed (${response.status})`);
    return;
  }
  await clearCookieSession();
  endSession("Logged out everywhere: every session of this account has ended.");
  log("Logged out everywhere");
}

function endSession(message) {
  clearTimeout(state.timer);
  Object.assign(state, {
    accessToken: null,
    claims: null,
    expiresAt: 0,
    refreshAt: 0,
    sessionEndsAt: 0,
    timer: null,
  });
  showTwoFactor(null);
  hideCodeField();
  setStatus(message);
  render();
}

function duration(ms) {
  let seconds = Math.max(0, Math.floor(ms / 1000));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds >= size) {
      parts.push(`${Math.floor(seconds / size)} ${unit}`);
      seconds %= size;
    }
  }
  if (!parts.length || seconds) parts.push(`${seconds} s`);
  return parts.join(" ");
}

function tick() {
  if (!state.accessToken) return;
  const left = state.expiresAt - Date.now();
  $("countdown").textContent = left > 0 ? duration(left + 999) : "expired";
  $("session-ends").textContent = duration(state.sessionEndsAt - Date.now());
}

function render() {
  const signedIn = Boolean(state.accessToken);
  $("login-panel").hidden = signedIn;
  $("session-panel").hidden = !signedIn;
  if (signedIn) {
    $("who").textContent = state.claims.email;
    $("claims").textContent = JSON.stringify(state.claims, null, 2);
    $("refresh-count").textContent = String(state.refreshes);
    tick();
  }
}

function run(action) {
  // Buttons stay usable; a SessionEnded has already switched the page to the login form.
  return action().catch((error) => {
    if (!(error instanceof SessionEnded)) setStatus(`Error: ${error.message}`);
  });
}

function showResult(text) {
  $("result").textContent = text;
}

function start() {
  if (document.body.dataset.cookieMode !== "on") {
    $("cookie-mode-off").hidden = false;
    return;
  }
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(login);
  });
  $("call-test").addEventListener("click", () =>
    run(async () => {
      const result = await callTest();
      showResult(result);
      log(`GET /test: ${result}`);
    }),
  );
  $("call-parallel").addEventListener("click", () =>
    run(async () => {
      const calls = Array.from({ length: PARALLEL_CALLS }, () => callTest());
      const statuses = (await Promise.all(calls)).map((result) => result.split(" ")[0]);
      showResult(`${PARALLEL_CALLS} calls: ${statuses.join(", ")}`);
      log(`${PARALLEL_CALLS} parallel GET /test: ${statuses.join(", ")}`);
    }),
  );
  $("logout").addEventListener("click", () => run(logout));
  $("logout-all").addEventListener("click", () => run(logoutEverywhere));
  $("auto-refresh").addEventListener("change", scheduleRefresh);
  $("tf-begin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(beginTwoFactor);
  });
  $("tf-confirm-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(confirmTwoFactor);
  });
  $("tf-recovery-done").addEventListener("click", () => showTwoFactor("on"));
  setInterval(tick, 250);

  if (readCookie(CSRF_COOKIE)) {
    // A session from before this page loaded: its access token died with the old page.
    run(async () => {
      await refresh();
      log("Resumed the session with a refresh");
      await loadTwoFactor();
    });
  } else {
    render();
  }
}

start();
