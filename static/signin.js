// The sign-in form shown instead of a page to nobody: it signs in, then reloads the page.
const form = document.getElementById("signin-form");
const error = document.getElementById("signin-error");

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
    if (response.ok) {
      location.reload();
      return;
    }
    const body = await response.json().catch(() => ({}));
    error.textContent = body.message || `Sign-in failed (${response.status}).`;
  } catch {
    error.textContent = "The server cannot be reached; try again.";
  }
  error.hidden = false;
  button.disabled = false;
});
