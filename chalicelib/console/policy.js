// Organization settings → Authenticator policy: which security keys count, with what a change
// would leave non-compliant shown before it is saved; and how a key's model and compliance read.

import { api } from "./api.js";
import { screen } from "./organization-screen.js";
import { WORDS, counted } from "./plural.js";
import { announce, confirmAction, h, run } from "./ui.js";

const CARD_ID = "policy-card";

let card = null; // built on first show, then kept: its controls by name

// A key's model and whether it counts, for the key tables of both settings pages.
export function modelText(key) {
  return key.model ?? "Unknown model";
}

export function complianceText(key) {
  if (key.policy_compliant) return "Counts";
  if (key.model_status && key.model_status !== "FIDO_CERTIFIED" && !key.model_status.startsWith("FIDO_CERTIFIED_")
      && key.model_status !== "NOT_FIDO_CERTIFIED") {
    return `Does not count: model reported ${key.model_status.toLowerCase().replaceAll("_", " ")}`;
  }
  return "Does not count under the organization's policy";
}

// The card sits after the organization's key list; it is built here so the page's markup stays as it is.
export async function showPolicy({ onSaved }) {
  const { policy } = await api.get("org/mfa/policy");
  if (!card) {
    card = buildCard(onSaved);
    screen.cards.keys.after(card.section);
  }
  fill(policy);
}

function field(id, label, control, hint) {
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { id: hintId, class: "muted" }, hint) : null);
}

function buildCard(onSaved) {
  const select = (id, options) => h("select", { id, name: id },
    ...options.map(([value, text]) => h("option", { value }, text)));
  const built = {
    userVerification: select("policy-user-verification", [
      ["discouraged", "Not needed (touch only)"], ["preferred", "When the key can"], ["required", "Required (PIN or biometric)"],
    ]),
    attestation: select("policy-attestation", [
      ["none", "Any security key"], ["required", "Only models verified by the FIDO Metadata Service"],
    ]),
    deviceBound: h("input", { type: "checkbox", id: "policy-device-bound" }),
    allowed: h("textarea", { id: "policy-allowed", rows: 2, spellcheck: "false" }),
    denied: h("textarea", { id: "policy-denied", rows: 2, spellcheck: "false" }),
    impact: h("p", { id: "policy-impact", role: "status", "aria-live": "polite" }),
    check: h("button", { type: "button", id: "policy-check" }, "Check impact"),
    save: h("button", { type: "submit", class: "primary", id: "policy-save" }, "Save policy"),
  };
  const form = h("form", { id: "policy-form", class: "stack", novalidate: true },
    field("policy-user-verification", "User verification", built.userVerification),
    field("policy-attestation", "Attestation", built.attestation,
      "Verified models prove what they are with a certificate from their maker."),
    h("div", { class: "checkbox" },
      built.deviceBound,
      h("label", { for: "policy-device-bound" }, "Device-bound keys only (no synced passkeys)")),
    field("policy-allowed", "Allowed models", built.allowed, "AAGUIDs, one per line. Empty: any model."),
    field("policy-denied", "Denied models", built.denied, "AAGUIDs, one per line."),
    built.impact,
    h("div", { class: "row-actions" }, built.check, built.save),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(built.save, () => save(onSaved));
  });
  built.check.addEventListener("click", (event) => run(event.currentTarget, checkImpact));
  built.section = h("section", { class: "card", id: CARD_ID, "aria-labelledby": "policy-title" },
    h("h2", { id: "policy-title" }, "Authenticator policy"),
    h("p", { class: "muted" }, "Which security keys count for your organization. A change applies to keys "
      + "already registered: under enforcement, members whose keys no longer count must register one that does."),
    form);
  return built;
}

function fill(policy) {
  card.userVerification.value = policy.user_verification;
  card.attestation.value = policy.attestation;
  card.deviceBound.checked = policy.device_bound_only;
  card.allowed.value = policy.allowed_aaguids.join("\n");
  card.denied.value = policy.denied_aaguids.join("\n");
  card.impact.textContent = "";
}

function lines(textarea) {
  return textarea.value.split(/[\s,]+/).map((line) => line.trim()).filter(Boolean);
}

function edited() {
  return {
    user_verification: card.userVerification.value,
    attestation: card.attestation.value,
    device_bound_only: card.deviceBound.checked,
    allowed_aaguids: lines(card.allowed),
    denied_aaguids: lines(card.denied),
  };
}

function describeImpact({ keys_total, keys_noncompliant, members_with_keys, members_noncompliant }) {
  const keys = `${keys_noncompliant} of ${counted(keys_total, WORDS.securityKey)}`;
  const members = `${members_noncompliant} of ${counted(members_with_keys, WORDS.member)} with keys`;
  return `With this policy, ${keys} would not count, and ${members} would hold no key that counts.`;
}

async function checkImpact() {
  const { impact } = await api.put("org/mfa/policy?dry_run=true", edited());
  card.impact.textContent = describeImpact(impact);
  return impact;
}

async function save(onSaved) {
  const impact = await checkImpact();
  if (impact.keys_noncompliant > 0) {
    const confirmed = await confirmAction({
      title: "Save this authenticator policy?",
      text: `${describeImpact(impact)} Those members must register a key that counts (under enforcement, at their next sign-in).`,
      confirm: "Save policy",
    });
    if (!confirmed) return;
  }
  const { policy } = await api.put("org/mfa/policy", edited());
  fill(policy);
  announce("Authenticator policy saved.");
  await onSaved?.();
}
