// The sign-in form: shown to nobody instead of a page (signing in reloads it), and in the
// dashboard's dialog when its session ends (signing in resumes the page in place).
const UNREACHABLE = "The server cannot be reached; try again.";

/** Sign in through `form`; call `done(body)` with the login's answer. */
export function bindSignIn(form, done) {
  const error = form.querySelector("#signin-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch("/api/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: form.username.value, password: form.password.value }),
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        form.password.value = "";
        button.disabled = false;
        done(body);
        return;
      }
      error.textContent = body.message || `Sign-in failed (${response.status}).`;
    } catch {
      error.textContent = UNREACHABLE;
    }
    error.hidden = false;
    button.disabled = false;
  });
}

const page = document.getElementById("signin-form");
if (page && !page.closest("dialog")) bindSignIn(page, () => location.reload());
