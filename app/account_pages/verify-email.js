import { explain, postJson, show, takeToken } from "./link.js";

async function verify() {
  const token = takeToken();
  if (!token) {
    show("This link has no token. Open the link from the mail as it is.", "error");
    return;
  }
  try {
    const result = await postJson("/account/verify-email", { token });
    if (result.status === 204) {
      show("Your email address is verified. You can close this page.", "ok");
    } else {
      show(explain(result), "error");
    }
  } catch {
    show("The service cannot be reached. Try again later.", "error");
  }
}

verify();
