// keyward's page of an authorization request (GET|POST /oidc/authorize): the member proves one of
// their security keys, and the browser goes back to the application with keyward's answer.
// The session is the console's (api.js keeps it in sessionStorage); a request carrying Entra's
// id_token_hint starts one for the person it names.

import { ApiError, call, segment, token } from "./api.js";
import { authorizeScreen } from "./authorize-screen.js";
import { getAssertion } from "./webauthn.js";

const body = document.body;
const requestId = body.dataset.request;

function say(text, { alert = false } = {}) {
  const element = authorizeScreen.status;
  element.textContent = text;
  element.setAttribute("role", alert ? "alert" : "status");
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", onClick);
  authorizeScreen.actions.replaceChildren(element);
  element.focus();
  return element;
}

// Back to the application: a redirect with the query, or a form posted to it (form_post).
function respond(done) {
  if (done.mode === "query") {
    const url = new URL(done.redirect_uri);
    for (const [name, value] of Object.entries(done.params)) url.searchParams.set(name, value);
    window.location.assign(url.toString());
    return;
  }
  const form = document.createElement("form");
  form.method = "post";
  form.action = done.redirect_uri;
  for (const [name, value] of Object.entries(done.params)) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.append(input);
  }
  document.body.append(form);
  form.submit();
}

function finish(answer) {
  if (answer.token) token.set(answer.token);
  if (!answer.refusal) {
    say("Done. Returning you to the application…");
    respond(answer.done);
    return;
  }
  say(`${answer.refusal.Message} (${answer.refusal.Code})`, { alert: true });
  button(`Return to ${body.dataset.client}`, () => respond(answer.done));
}

const post = (step, payload) => call("POST", `oidc/authorize/${segment(requestId)}/${step}`, payload);

async function checkKey() {
  const options = await post("options");
  if (options.done) return finish(options);
  say("Touch your security key when it asks.");
  let credential;
  try {
    credential = await getAssertion(options.publicKey);
  } catch (error) {
    say("The security key check did not complete.", { alert: true });
    button("Try again", () => run());
    return undefined;
  }
  say("Checking…");
  return finish(await post("verify", { challenge_id: options.challenge_id, credential }));
}

async function run() {
  authorizeScreen.actions.replaceChildren();
  try {
    if (!token.get()) {
      if (body.dataset.hint !== "yes") {
        say("Sign in to keyward in this browser first, then come back to this page.", { alert: true });
        const link = document.createElement("a");
        link.href = new URL(".", document.baseURI).toString();
        link.target = "_blank";
        link.textContent = "Open keyward";
        authorizeScreen.actions.replaceChildren(link);
        button("I signed in: continue", () => run()).before(link);
        return;
      }
      const signedIn = await post("session");
      if (signedIn.done) return finish(signedIn);
      token.set(signedIn.token);
    }
    say("Ready for your security key.");
    button("Use my security key", () => checkKey().catch(failed));
  } catch (error) {
    failed(error);
  }
  return undefined;
}

function failed(error) {
  if (error instanceof ApiError) {
    say(`${error.message} (${error.code})`, { alert: true });
    if (error.status === 401) token.clear();
  } else {
    say("Something went wrong; reload the page to try again.", { alert: true });
  }
  button("Cancel and return to the application", async () => {
    try {
      finish(await post("cancel"));
    } catch (cancelError) {
      say(`${cancelError.message}`, { alert: true });
    }
  });
}

if (body.dataset.step === "respond") {
  authorizeScreen.response.submit();
} else if (body.dataset.step === "check") {
  run();
}
