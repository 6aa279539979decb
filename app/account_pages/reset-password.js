import { explain, postJson, show, takeToken } from "./link.js";

const token = takeToken();
const form = document.getElementById("reset-form");
const submit = document.getElementById("submit");

if (!token) {
  show("This link has no token. Open the link from the mail as it is.", "error");
} else {
  form.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = document.getElementById("new-password").value;
  const repeated = document.getElementById("repeat-password").value;
  if (password !== repeated) {
    show("The two passwords differ.", "error");
    return;
  }
  submit.disabled = true;
  try {
    const result = await postJson("/account/reset-password", {
      token,
      new_password: password,
    });
    if (result.status === 204) {
      form.hidden = true;
      show(
        "Your password is set. Every session of the account has ended: log in again " +
          "with the new password.",
        "ok",
      );
      return;
    }
    show(explain(result), "error");
    if (result.status === 400) {
      form.hidden = true;
    }
  } catch {
    show("The service cannot be reached. Try again later.", "error");
  } finally {
    submit.disabled = false;
  }
});
