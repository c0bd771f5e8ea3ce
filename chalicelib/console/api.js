// keyward's HTTP API as the console calls it: the session token, JSON in and out, and refusals
// as ApiError with the API's reason code.

import { reached, unreachable } from "./connection.js";

const TOKEN_KEY = "keyward.session";

// Ceremony failures are 401s too, but the session survives them: the user just tries again.
const CEREMONY_FAILURES = new Set([
  "ChallengeNotFound", "ChallengeExpired", "ChallengeMismatch", "OriginMismatch", "CrossOriginRefused",
  "RpIdMismatch", "UserNotPresent", "InvalidBackupFlags", "UnsupportedAlgorithm", "UnknownCredential",
  "SignCountRegression", "CeremonyFailed", "BackupEligibilityChanged",
]);

// Answers of a gateway that got none from keyward; a 503 of keyward's own says its storage is busy.
const GATEWAY_FAILURES = new Set([502, 503, 504]);
// keyward's own 503s that name something else than keyward being out of reach (the IdP, KMS).
const UNAVAILABLE_ELSEWHERE = new Set(["IdentityProviderUnavailable", "WebhookSecretKeyUnavailable", "SigningKeyUnavailable"]);

export class ApiError extends Error {
  constructor({ status, code, message, method = null }) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.method = method; // whether the refused request could have changed anything
    // keyward could not be reached: the offline banner says so (connection.js).
    this.unreachable = status === 0 || (GATEWAY_FAILURES.has(status) && !UNAVAILABLE_ELSEWHERE.has(code));
    // A refusal that may mean the page shows what is no longer so — a rule refused the change as
    // things are now (409), or what it was about is gone (404) — after which the page reloads
    // what it shows (ui.js run). A step-up not completed is one too (see call).
    this.pageMayBeStale = status === 409 || (status === 404 && code !== "NoSuchEndpoint");
  }

  // The session is gone (ended, expired, thrown out by enforcement): back to the sign-in screen.
  get endsSession() {
    return this.status === 401 && !CEREMONY_FAILURES.has(this.code);
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let onSessionEnded = () => {};
let onWrongState = () => {};
let onReauthenticationRequired = null;

// The app decides what "signed out" looks like; the API layer only reports it.
export function whenSessionEnds(handler) {
  onSessionEnded = handler;
}

// The session must pass the MFA check or register a key first (e.g. after enforcement).
export function whenSessionNeedsStep(handler) {
  onWrongState = handler;
}

// A sensitive change needs a recent security-key check: the handler performs one (or throws),
// and the change is sent once more. The handler is told what the change is, to name it.
export function whenReauthenticationRequired(handler) {
  onReauthenticationRequired = handler;
}

// Every path is relative to the page's <base>, so the console works under API Gateway's stage too.
// A request given an AbortSignal (a page's, see page.js) rejects with the AbortError once aborted.
// `file` asks for an answer that is a file rather than JSON (the audit log's export): it resolves
// to its text and headers; a refusal is still JSON and still an ApiError. `change` names a
// sensitive change in words ("delete the security key “Blue YubiKey”") for the step-up that may
// guard it.
export async function call(method, path, body, { retried = false, signal = undefined, file = false, change = undefined } = {}) {
  const headers = { accept: file ? "*/*" : "application/json" };
  const sent = token.get();
  if (sent) headers.authorization = `Bearer ${sent}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(new URL(path, document.baseURI), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store", signal,
    });
  } catch (error) {
    if (error?.name === "AbortError") throw error;
    unreachable({ change: method === "GET" ? null : "was not saved" });
    throw new ApiError({ status: 0, code: "NetworkError", message: "keyward could not be reached.", method });
  }
  if (response.ok) reached();
  if (response.status === 204) return null;
  const text = await response.text();
  signal?.throwIfAborted();
  if (file && response.ok) return { text, headers: response.headers };
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (response.ok) return parsed;
  const error = new ApiError({
    status: response.status,
    // API Gateway's own refusals (no such route) carry {"message"} rather than {"Code", "Message"}.
    code: parsed?.Code ?? (response.status === 403 || response.status === 404 ? "NoSuchEndpoint" : `Http${response.status}`),
    message: parsed?.Message ?? parsed?.message ?? `${response.status} ${response.statusText}`,
    method,
  });
  if (error.unreachable) {
    // A gateway that timed out waiting for keyward cannot tell whether the change was made.
    const outcome = response.status === 503 ? "was not saved" : "may not have been saved";
    unreachable({ change: method === "GET" ? null : outcome });
    throw error;
  }
  reached();
  // Only a session we sent can have ended; a failed sign-in is reported where it happened.
  if (sent && error.endsSession && token.get() === sent) {
    token.clear();
    error.handled = true;
    onSessionEnded(error);
  } else if (sent && (error.code === "MfaRequired" || error.code === "RegistrationRequired")) {
    error.handled = true;
    onWrongState(error);
  } else if (sent && error.code === "ReauthenticationRequired" && onReauthenticationRequired && !retried) {
    try {
      await onReauthenticationRequired(error, { method, path, body, change });
    } catch (notConfirmed) {
      // Cancelled, or no key answered: the change was not sent, and the page shows it as stored.
      if (notConfirmed instanceof Error && notConfirmed.name !== "AbortError" && !notConfirmed.unreachable) {
        notConfirmed.pageMayBeStale = true;
      }
      throw notConfirmed;
    }
    return call(method, path, body, { retried: true, signal, file, change });
  }
  throw error;
}

export const api = {
  get: (path, { signal } = {}) => call("GET", path, undefined, { signal }),
  file: (path, { signal } = {}) => call("GET", path, undefined, { signal, file: true }),
  post: (path, body, { change } = {}) => call("POST", path, body, { change }),
  put: (path, body, { change } = {}) => call("PUT", path, body, { change }),
  patch: (path, body, { change } = {}) => call("PATCH", path, body, { change }),
  delete: (path, { change } = {}) => call("DELETE", path, undefined, { change }),
};

export const segment = (value) => encodeURIComponent(value);
