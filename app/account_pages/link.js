// Shared by the account pages: the token comes from the URL fragment, which no server,
// proxy or access log ever sees, and leaves the address bar (and the history) at once.

export function takeToken() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token");
  if (window.location.hash) {
    history.replaceState(null, "", window.location.pathname);
  }
  return token;
}

export async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  let problem = null;
  if (response.status !== 204) {
    try {
      problem = await response.json();
    } catch {
      problem = null;
    }
  }
  return { status: response.status, problem };
}

export function show(text, kind) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = kind || "";
}

export function explain(result) {
  if (result.status === 400) {
    return "This link is invalid, used or expired. Ask for a new one.";
  }
  if (result.status === 429) {
    return "Too many attempts. Try again in a few minutes.";
  }
  if (result.status === 422 && result.problem && Array.isArray(result.problem.errors)) {
    const messages = result.problem.errors.map((error) => error.msg);
    if (messages.length) {
      return "The new password is refused: " + messages.join("; ") + ".";
    }
  }
  return "Something went wrong (" + result.status + "). Try again later.";
}
