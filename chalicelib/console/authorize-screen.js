// The authorize page's elements, looked up in this one place (authorize.js runs the key check
// with them). keyward renders the page with them; a module script runs once it is parsed.

export const authorizeScreen = {
  status: document.getElementById("authorize-status"),
  actions: document.getElementById("authorize-actions"),
  // Only on the page that posts keyward's answer to the application (form_post).
  response: document.getElementById("response"),
};
