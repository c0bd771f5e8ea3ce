// Organization settings → Authenticator policy: which security keys count, with what a change
// would leave non-compliant shown before it is saved; and how a key's model and compliance read.

import { api } from "./api.js";
import { screen } from "./organization-screen.js";
import { WORDS, counted, form } from "./plural.js";
import { announce, confirmAction, h, run, when } from "./ui.js";

const CARD_ID = "policy-card";
// The words only this card counts, in plural.js's shape.
const DAYS = { one: "day", other: "days" };
const KEEPS = { one: "keeps", other: "keep" };
const IS = { one: "is", other: "are" };

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
  if (key.policy_shortfalls?.length) return `Does not count: ${shortfallsText(key.policy_shortfalls)}`;
  return "Does not count under the organization's policy";
}

// The rules a stored key falls short of (the API's reason codes), in words.
const SHORTFALLS = {
  AttestationRequired: "the organization requires a key model verified by the FIDO Metadata Service",
  AuthenticatorNotAllowed: "the organization does not accept this key's model",
  SyncedCredentialNotAllowed: "the organization accepts only device-bound keys, not synced passkeys",
};

export function shortfallsText(codes) {
  return codes.map((code) => SHORTFALLS[code] ?? "it falls short of the organization's policy").join("; ");
}

// What a key registered now must be, from the policy's rules (GET /me's mfa.accepted).
export function acceptedText(accepted) {
  const needs = [];
  if (accepted.user_verification === "required") needs.push("verifies a PIN or biometric");
  if (accepted.attestation === "required") needs.push("is a model verified by the FIDO Metadata Service");
  if (accepted.device_bound_only) needs.push("is device-bound, not a synced passkey");
  if (accepted.allowed_aaguids.length) needs.push("is one of the models the organization allows (ask an admin which)");
  if (!needs.length) return "Register a new security key.";
  return `Register a security key that ${needs.join(", and that ")}.`;
}

// A deadline in words, relative to today ("tomorrow", "in 6 days"), beside the date itself.
const DAY = 24 * 60 * 60 * 1000;
const relativeDays = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

function fromNow(iso) {
  const days = Math.round((new Date(iso).getTime() - Date.now()) / DAY);
  return days <= 0 ? "today" : relativeDays.format(days, "day");
}

function deadline(iso) {
  return [when(iso), ` (${fromNow(iso)})`];
}

// For a member whose keys a policy change stopped counting, during its grace period: which key fails
// which rule, until when it still counts, and what to register by then (GET /me's key_policy.keys_spared).
let sparedNotice = null;

export function showKeysSpared(me, after) {
  const spared = me.key_policy?.keys_spared;
  if (!sparedNotice) {
    sparedNotice = h("div", { id: "keys-spared", class: "warning", role: "note" });
    after.after(sparedNotice);
  }
  sparedNotice.hidden = !spared;
  if (!spared) {
    sparedNotice.replaceChildren();
    return;
  }
  const why = spared.keys.map((key) => h("p", {},
    `Your organization's policy no longer accepts your key “${key.name}”: ${shortfallsText(key.shortfalls)}.`));
  sparedNotice.replaceChildren(...why, h("p", {},
    ...(spared.keeps_a_key
      ? ["It keeps working until ", ...deadline(spared.until), "; another of your keys already counts."]
      : ["It keeps working until ", ...deadline(spared.until), ". ",
        `${acceptedText(me.key_policy.accepted).replace(/\.$/, "")} by then to keep signing in.`])));
}

// For a member whose keys the organization no longer accepts: which of their keys, why, and what would do.
export function replacementText({ keys_to_replace: keys, accepted }) {
  const why = keys.map((key) => `Your key “${key.name}” no longer counts: ${shortfallsText(key.shortfalls)}.`);
  return [...why, acceptedText(accepted)].join(" ");
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
    affected: h("div", { id: "policy-affected", hidden: true }),
    appliesTo: h("fieldset", { class: "stack", id: "policy-applies-to" },
      h("legend", {}, "Apply the change"),
      ...[
        ["all_keys", "Apply to all keys now", "Keys already registered that fall short stop counting."],
        ["new_registrations", "Apply to new registrations only", "Keys already registered keep counting; only keys registered from now on must comply."],
        ["grace", "Apply to all keys after a grace period", "Keys already registered that fall short keep counting until the period ends; their holders are told by when to replace them."],
      ].map(([value, label, hint]) => h("div", { class: "checkbox" },
        h("input", { type: "radio", name: "policy-applies-to", id: `policy-applies-${value}`, value,
          "aria-describedby": `policy-applies-${value}-hint` }),
        h("label", { for: `policy-applies-${value}` }, label),
        h("p", { id: `policy-applies-${value}-hint`, class: "muted" }, hint)))),
    graceDays: h("select", { id: "policy-grace-days", name: "policy-grace-days" },
      ...[1, 3, 7, 14, 30].map((days) => h("option", { value: String(days) }, counted(days, DAYS)))),
    graceField: null,
    graceStatus: h("p", { id: "policy-grace-status", class: "muted", hidden: true }),
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
    built.appliesTo,
    built.graceField = field("policy-grace-days", "Grace period", built.graceDays,
      "How long keys the change stops counting keep counting (at most 30 days)."),
    built.graceStatus,
    built.impact,
    built.affected,
    h("div", { class: "row-actions" }, built.check, built.save),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(built.save, () => save(onSaved));
  });
  built.check.addEventListener("click", (event) => run(event.currentTarget, checkImpact));
  built.appliesTo.addEventListener("change", () => showGraceField(built));
  built.section = h("section", { class: "card", id: CARD_ID, "aria-labelledby": "policy-title" },
    h("h2", { id: "policy-title" }, "Authenticator policy"),
    h("p", { class: "muted" }, "Which security keys count for your organization. A change applies to keys "
      + "already registered — under enforcement, members whose keys no longer count must register one that does — "
      + "or, if you choose, to new registrations only."),
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
  card.affected.replaceChildren();
  card.affected.hidden = true;
  card.appliesTo.querySelector("input[value=all_keys]").checked = true;
  card.graceDays.value = "7";
  showGraceField(card);
  // A grace period running: until when the keys the last change stopped counting still count.
  card.graceStatus.hidden = !policy.grace_until;
  card.graceStatus.replaceChildren(...(policy.grace_until
    ? ["Keys the last change stopped counting keep counting until ", ...deadline(policy.grace_until), "."]
    : []));
}

function showGraceField(built) {
  built.graceField.hidden = built.appliesTo.querySelector("input:checked")?.value !== "grace";
}

// The radio's choice: "all_keys", "new_registrations", or "grace" (all keys, after a grace period).
function appliesTo() {
  return card.appliesTo.querySelector("input:checked")?.value ?? "all_keys";
}

// The change as the API takes it: the rules, and which keys they judge from when.
function changeOf(mode, rules = edited()) {
  if (mode === "grace") return { ...rules, applies_to: "all_keys", grace_period_hours: Number(card.graceDays.value) * 24 };
  return { ...rules, applies_to: mode };
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

function describeImpact({ keys_total, keys_noncompliant, members_with_keys, members_noncompliant, grace_until }) {
  const keys = `${keys_noncompliant} of ${counted(keys_total, WORDS.securityKey)}`;
  const members = `${members_noncompliant} of ${counted(members_with_keys, WORDS.member)} with keys`;
  const from = grace_until ? ` once the grace period ends on ${dateText(grace_until)}` : "";
  return `With this policy, ${keys} would not count${from}, and ${members} would hold no key that counts.`;
}

// The grace period's effect, for the dry run's answer: who keeps passing MFA, and until when.
function graceText(impact) {
  if (!impact.grace_until || !impact.members_affected) return "";
  return ` Until ${dateText(impact.grace_until)} (${fromNow(impact.grace_until)}) their keys keep counting: `
    + `${counted(impact.members_spared, WORDS.member)} who would hold no key that counts `
    + `${form(impact.members_spared, KEEPS)} passing MFA until then and ${form(impact.members_spared, IS)} `
    + "told by when to replace their key.";
}

const dateWords = new Intl.DateTimeFormat(undefined, { dateStyle: "long", timeStyle: "short" });

function dateText(iso) {
  return dateWords.format(new Date(iso));
}

function memberText(member) {
  const keys = member.keys.map((key) => `“${key.name}” (${shortfallsText(key.shortfalls)})`).join(", ");
  return `${member.name || member.user_id}: ${keys}${member.keeps_a_key ? "; another of their keys still counts" : ""}`;
}

function affectedHeading(impact) {
  return `${counted(impact.members_affected, WORDS.member)} would have keys that no longer count`
    + `${impact.includes_you ? ", including your own key" : ""}:`;
}

// The affected members, a page at a time: what the dry run named, and a button for the rest.
function showAffected(impact, dryRun) {
  card.affected.replaceChildren();
  card.affected.hidden = impact.members_affected === 0;
  if (card.affected.hidden) return;
  const list = h("ul", { id: "policy-affected-list", "aria-labelledby": "policy-affected-heading" });
  const rest = h("p", { class: "muted" });
  const more = h("button", { type: "button", class: "quiet" }, "Show more");
  let shown = 0;
  let next = impact.affected_next;
  const add = (page) => {
    for (const member of page) list.append(h("li", {}, memberText(member)));
    shown += page.length;
    rest.textContent = next ? `and ${counted(impact.members_affected - shown, WORDS.member)} more` : "";
    rest.hidden = more.hidden = !next;
  };
  more.addEventListener("click", (event) => run(event.currentTarget, async () => {
    const page = await dryRun(next);
    next = page.affected_next;
    add(page.affected);
  }));
  card.affected.append(h("p", { id: "policy-affected-heading" }, affectedHeading(impact)), list, rest, more);
  add(impact.affected);
}

// The dry run is of the change applied to all keys (with the grace period, if one is chosen): it
// names whom the rules would touch, whichever way the admin then chooses to apply them.
async function dryRun(next = null, document = edited()) {
  const query = next ? `&next=${encodeURIComponent(next)}` : "";
  const { impact } = await api.put(`org/mfa/policy?dry_run=true${query}`, document);
  return impact;
}

async function checkImpact() {
  const mode = appliesTo();
  const document = mode === "grace" ? changeOf(mode) : edited();
  const impact = await dryRun(null, document);
  card.impact.textContent = describeImpact(impact) + graceText(impact);
  showAffected(impact, (next) => dryRun(next, document));
  return impact;
}

function consequence(impact, mode) {
  const names = impact.affected.map((member) => member.name || member.user_id);
  const more = impact.members_affected - names.length;
  const who = `${names.join(", ")}${more > 0 ? ` and ${counted(more, WORDS.member)} more` : ""}`;
  if (mode === "new_registrations") {
    return `Applied to new registrations only: keys already registered keep counting — those of ${who} too`
      + `${impact.includes_you ? ", and your own" : ""}. Only keys registered from now on must meet this policy.`;
  }
  if (mode === "grace") {
    return `${describeImpact(impact)} Affected: ${who}${impact.includes_you ? ", including your own key" : ""}.`
      + `${graceText(impact)} From then on, those members must register a key that counts`
      + `${impact.includes_you ? ", you included" : ""}.`;
  }
  return `${describeImpact(impact)} Affected: ${who}${impact.includes_you ? ", including your own key" : ""}. `
    + "Those members must register a key that counts (under enforcement, at their next sign-in)"
    + `${impact.includes_you ? ", you included" : ""}.`;
}

async function save(onSaved) {
  const impact = await checkImpact();
  const mode = appliesTo();
  if (impact.keys_noncompliant > 0) {
    const confirmed = await confirmAction({
      title: {
        new_registrations: "Save this authenticator policy for new registrations only?",
        grace: "Save this authenticator policy for all keys after a grace period?",
      }[mode] ?? "Save this authenticator policy for all keys now?",
      text: consequence(impact, mode),
      confirm: "Save policy",
      danger: mode === "all_keys",
    });
    if (!confirmed) return;
  }
  const { policy } = await api.put("org/mfa/policy", changeOf(mode));
  fill(policy);
  announce({
    new_registrations: "Authenticator policy saved for new registrations only.",
    grace: `Authenticator policy saved: keys it stops counting keep counting until ${policy.grace_until ? dateText(policy.grace_until) : "the grace period ends"}.`,
  }[mode] ?? "Authenticator policy saved.");
  await onSaved?.();
}
