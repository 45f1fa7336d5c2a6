// The page's "Sign out" button: end the session (with its CSRF token), then reload into
// the sign-in form.
const button = document.getElementById("sign-out");

button?.addEventListener("click", async () => {
  button.disabled = true;
  // Read when clicked: signing in again in place renews the page's token.
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  try {
    await fetch("/api/auth/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
  } finally {
    location.reload();
  }
});
