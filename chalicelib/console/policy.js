// Organization settings → Authenticator policy: which security keys count, with what a change
// would leave non-compliant shown before it is saved; and how a key's model and compliance read.

import { api } from "./api.js";
import { $, announce, confirmAction, h, run } from "./ui.js";

const CARD_ID = "policy-card";

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
  let card = $(CARD_ID);
  if (!card) {
    card = buildCard(onSaved);
    $("org-keys").closest("section").after(card);
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
  const form = h("form", { id: "policy-form", class: "stack", novalidate: true },
    field("policy-user-verification", "User verification", select("policy-user-verification", [
      ["discouraged", "Not needed (touch only)"], ["preferred", "When the key can"], ["required", "Required (PIN or biometric)"],
    ])),
    field("policy-attestation", "Attestation", select("policy-attestation", [
      ["none", "Any security key"], ["required", "Only models verified by the FIDO Metadata Service"],
    ]), "Verified models prove what they are with a certificate from their maker."),
    h("div", { class: "checkbox" },
      h("input", { type: "checkbox", id: "policy-device-bound" }),
      h("label", { for: "policy-device-bound" }, "Device-bound keys only (no synced passkeys)")),
    field("policy-allowed", "Allowed models", h("textarea", { id: "policy-allowed", rows: 2, spellcheck: "false" }),
      "AAGUIDs, one per line. Empty: any model."),
    field("policy-denied", "Denied models", h("textarea", { id: "policy-denied", rows: 2, spellcheck: "false" }),
      "AAGUIDs, one per line."),
    h("p", { id: "policy-impact", role: "status", "aria-live": "polite" }),
    h("div", { class: "row-actions" },
      h("button", { type: "button", id: "policy-check" }, "Check impact"),
      h("button", { type: "submit", class: "primary", id: "policy-save" }, "Save policy")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run($("policy-save"), () => save(onSaved));
  });
  form.querySelector("#policy-check").addEventListener("click", (event) => run(event.currentTarget, checkImpact));
  return h("section", { class: "card", id: CARD_ID, "aria-labelledby": "policy-title" },
    h("h2", { id: "policy-title" }, "Authenticator policy"),
    h("p", { class: "muted" }, "Which security keys count for your organization. A change applies to keys "
      + "already registered: under enforcement, members whose keys no longer count must register one that does."),
    form);
}

function fill(policy) {
  $("policy-user-verification").value = policy.user_verification;
  $("policy-attestation").value = policy.attestation;
  $("policy-device-bound").checked = policy.device_bound_only;
  $("policy-allowed").value = policy.allowed_aaguids.join("\n");
  $("policy-denied").value = policy.denied_aaguids.join("\n");
  $("policy-impact").textContent = "";
}

function lines(id) {
  return $(id).value.split(/[\s,]+/).map((line) => line.trim()).filter(Boolean);
}

function edited() {
  return {
    user_verification: $("policy-user-verification").value,
    attestation: $("policy-attestation").value,
    device_bound_only: $("policy-device-bound").checked,
    allowed_aaguids: lines("policy-allowed"),
    denied_aaguids: lines("policy-denied"),
  };
}

function describeImpact({ keys_total, keys_noncompliant, members_with_keys, members_noncompliant }) {
  const keys = `${keys_noncompliant} of ${keys_total} security ${keys_total === 1 ? "key" : "keys"}`;
  const members = `${members_noncompliant} of ${members_with_keys} ${members_with_keys === 1 ? "member" : "members"} with keys`;
  return `With this policy, ${keys} would not count, and ${members} would hold no key that counts.`;
}

async function checkImpact() {
  const { impact } = await api.put("org/mfa/policy?dry_run=true", edited());
  $("policy-impact").textContent = describeImpact(impact);
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
