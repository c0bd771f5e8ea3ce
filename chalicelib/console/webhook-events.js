// Which events a webhook endpoint is sent, in Organization settings → Webhooks: every audit
// action an endpoint may ask for, with what it means (docs/api.md's table of audit actions), as a
// group of checkboxes, and "All events" ("*"), which also takes the actions keyward adds later.

import { h } from "./ui.js";

export const EVERY_EVENT = "*";

// In the order of docs/api.md's table; a test event and an event sent again are not subscribed
// to: each goes to the one endpoint it was asked for.
export const WEBHOOK_EVENTS = [
  ["login", "A member signed in through the IdP"],
  ["mfa.succeeded", "A member passed the security key check"],
  ["mfa.failed", "A member failed the security key check"],
  ["reauth.succeeded", "A member confirmed a sensitive action with a security key"],
  ["reauth.failed", "A member failed to confirm a sensitive action with a security key"],
  ["logout", "A member signed out"],
  ["oidc.authorized", "The OpenID provider answered an app after a key check"],
  ["oidc.refused", "The OpenID provider refused an authorization request or a code"],
  ["oidc.token_issued", "An app redeemed a code at the token endpoint"],
  ["key.registered", "A security key was added"],
  ["key.renamed", "A security key was renamed"],
  ["key.deleted", "A security key was deleted, by its member or an admin"],
  ["key.registration_failed", "A security key registration was refused"],
  ["key.sign_count_regression", "A key's signature counter went backwards: it may be cloned"],
  ["key.model_compromised", "The FIDO Metadata Service reports a key's model compromised"],
  ["policy.changed", "The authenticator policy changed"],
  ["mfa.disabled", "A member disabled MFA, removing every key"],
  ["enforcement.enabled", "MFA was enforced for everyone"],
  ["enforcement.disabled", "MFA was no longer enforced"],
  ["enforcement.sessions_ended", "Enforcement's clean-up ended the sessions without a key check"],
  ["enforcement.grace_period_changed", "The grace period of enforcement changed"],
  ["backup_credentials.created", "Backup credentials were created"],
  ["backup_credentials.deleted", "Backup credentials were deleted"],
  ["backup_login.succeeded", "Someone signed in with backup credentials"],
  ["backup_login.failed", "A sign-in with backup credentials failed"],
  ["session.ended", "A member ended one of their sessions"],
  ["member.sessions_ended", "An admin ended a member's sessions"],
  ["enrollment.changed", "Who may register a first security key changed"],
  ["enrollment_pass.issued", "An enrolment pass was issued to a member"],
  ["enrollment_pass.revoked", "An enrolment pass was revoked"],
  ["enrollment_pass.used", "A member registered a first key with an enrolment pass"],
  ["enrollment_pass.refused", "An enrolment code was refused"],
  ["member.offboarded", "A member was offboarded: their keys deleted, their sessions ended"],
  ["webhook.created", "A webhook endpoint was added"],
  ["webhook.changed", "A webhook endpoint's URL or events changed"],
  ["webhook.enabled", "A webhook endpoint was enabled again"],
  ["webhook.disabled", "A webhook endpoint was disabled, by an admin or after failing"],
  ["webhook.deleted", "A webhook endpoint was deleted"],
  ["oidc_client.created", "A relying party was added"],
  ["oidc_client.changed", "A relying party changed"],
  ["oidc_client.secret_rotated", "A relying party's client secret was replaced"],
  ["oidc_client.deleted", "A relying party was deleted"],
];

// The fieldset, and what is chosen in it: ["*"], or the actions checked.
export function eventChooser({ idPrefix }) {
  const every = h("input", { type: "checkbox", id: `${idPrefix}-all`, value: EVERY_EVENT, checked: true,
    "aria-describedby": `${idPrefix}-all-meaning` });
  const boxes = WEBHOOK_EVENTS.map(([action]) => h("input", {
    type: "checkbox", id: `${idPrefix}-${action}`, value: action, "aria-describedby": `${idPrefix}-${action}-meaning`,
  }));
  const item = (box, name, meaning) => h("li", { class: "event-choice" },
    box,
    h("label", { for: box.id }, box === every ? name : h("code", {}, name)),
    h("span", { id: `${box.id}-meaning`, class: "muted" }, meaning));
  const list = h("ul", { class: "plain event-choices" },
    ...WEBHOOK_EVENTS.map(([action, meaning], index) => item(boxes[index], action, meaning)));
  const fieldset = h("fieldset", { id: `${idPrefix}-fieldset`, class: "event-chooser" },
    h("legend", {}, "Events"),
    h("ul", { class: "plain" }, item(every, "All events", "Every event, and those keyward adds later")),
    list);
  // With "All events" the single events say nothing: they are shown greyed, not unchecked.
  const sync = () => { for (const box of boxes) box.disabled = every.checked; };
  every.addEventListener("change", sync);
  sync();
  return {
    fieldset,
    chosen: () => (every.checked ? [EVERY_EVENT] : boxes.filter((box) => box.checked).map((box) => box.value)),
    reset: () => {
      every.checked = true;
      for (const box of boxes) box.checked = false;
      sync();
    },
  };
}
