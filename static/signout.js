// The page's "Sign out" button: end the session (with its CSRF token), then reload into
// the sign-in form.
const button = document.getElementById("sign-out");
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

button?.addEventListener("click", async () => {
  button.disabled = true;
  try {
    await fetch("/api/auth/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
  } finally {
    location.reload();
  }
});
