// Compliance as the organization page shows it: the figure of members holding an accepted
// security key, or that keyward is recounting it after a policy change; and the admins the
// enforcement preview names because they hold no key.
//
// Every place of the page that shows coverage (the meter, the members' standing, the roll-out
// lists) reads the one state kept here, set once per answer of GET /org/mfa the page shows: they
// say together that the figures are being recounted, and show the figures together once it ends.

import { api } from "./api.js";
import { screen } from "./organization-screen.js";
import { WORDS, counted, form, partOf } from "./plural.js";
import { emptyRow, h, run } from "./ui.js";

const RECOUNT_POLL_MS = 1000;

let shown = null; // compliance.state of the GET /org/mfa answer the page shows, null before the first

// The page now shows this answer of GET /org/mfa: every place of coverage follows its state.
export function showCompliance(mfa) {
  shown = mfa.compliance?.state ?? "done";
}

// Signing out or leaving: the next page starts from its own answer.
export function forgetCompliance() {
  shown = null;
}

// Whether an answer of GET /org/mfa says otherwise than the page shows: a recount started or ended,
// which every place of coverage must show at once (organization.showCoverage).
export function complianceChanged(mfa) {
  return shown !== null && (mfa.compliance?.state ?? "done") !== shown;
}

// Whether the page shows figures, rather than that they are being (re)counted.
export function figuresKnown() {
  return shown === null || shown === "done";
}

// Members holding a key the policy accepts, or null while the figure is being recounted.
export function compliantCount(mfa) {
  return mfa.compliance?.state === "done" ? mfa.members_compliant : null;
}

// The status sentence: a figure, or why there is none yet.
export function complianceSentence(mfa) {
  const total = mfa.members_total;
  const compliant = compliantCount(mfa);
  if (compliant === null) {
    // Not "which of the 1 member": a single member either holds one or not.
    const members = counted(total, WORDS.member);
    const which = form(total, { one: `whether the ${members} holds`, other: `which of the ${members} hold` });
    return mfa.compliance?.state === "uncounted"
      ? `${which.charAt(0).toUpperCase()}${which.slice(1)} an accepted security key is not counted yet`
      : `Recounting ${which} a security key the policy accepts…`;
  }
  return `${partOf(compliant, total, WORDS.member, WORDS.has)} a security key`;
}

// The meter and its sentence. While the figure is recounted the meter shows no number, only the
// sentence saying so, and the area is busy until the figure is back.
export function renderMeter(mfa) {
  const { meter, complianceText } = screen.enforcement;
  const total = Math.max(mfa.members_total, 1);
  const compliant = compliantCount(mfa);
  const text = complianceSentence(mfa);
  meter.max = total;
  meter.value = compliant ?? 0;
  meter.low = total - 0.5; // anything short of everyone shows as a warning
  meter.high = total - 0.25;
  meter.optimum = total;
  meter.hidden = compliant === null;
  meter.textContent = text;
  meter.setAttribute("aria-valuetext", text);
  const area = meter.closest(".compliance");
  if (compliant === null && mfa.compliance?.state === "recounting") area.setAttribute("aria-busy", "true");
  else area.removeAttribute("aria-busy");
  complianceText.textContent = text;
}

// While the figure is recounted, ask again every second; an answer saying the recount ended is
// shown by every place of coverage at once (`render` sends it there). The page (page.js) owns the
// timer, which stops when the page is left.
export function watchRecount(mfa, render, page) {
  if (mfa.compliance?.state !== "recounting") {
    page.cancel("recount");
    return;
  }
  page.after("recount", RECOUNT_POLL_MS,
    () => run(null, async () => render(await api.get("org/mfa", { signal: page.signal }))));
}

// The row a roll-out list shows instead of its members while the figures are being counted.
export function coverageBeingCounted(columns) {
  return emptyRow(columns, shown === "uncounted"
    ? "Not counted yet — the list appears once an operator has counted the organization's keys."
    : "Being recounted — the list appears when the count is done.");
}

// The preview's admins without a key: how many, and the first of them by name and email.
export function adminsWithoutKey(found) {
  const missing = found.admins_without_key;
  if (!missing) {
    return h("p", { id: "preview-admins-summary" }, "Every admin has a security key.");
  }
  return h("div", { id: "preview-admins" },
    h("p", { id: "preview-admins-summary" },
      `${partOf(missing, found.admins_total, WORDS.admin, WORDS.has)} no security key: `
      + "an admin needs one to enforce MFA, and to sign in once it is enforced."),
    h("ul", { id: "preview-admins-list", "aria-label": "Admins without a security key" },
      ...found.admins_without_key_first_page.map((admin) =>
        h("li", {}, admin.email ? `${admin.name || admin.id} (${admin.email})` : (admin.name || admin.id)))));
}

// A member's MFA standing in the members list: a key the policy accepts, keys it refuses, none,
// or not known while the figures are recounted.
export function memberStanding(member) {
  if (!figuresKnown() || member.compliant === null) {
    return h("span", { class: "pill" }, shown === "uncounted" ? "Not counted yet" : "Being recounted");
  }
  if (member.compliant) return h("span", { class: "pill ok" }, "Has a security key");
  return member.key_count > 0
    ? h("span", { class: "pill warn" }, "No accepted security key")
    : h("span", { class: "pill warn" }, "No security key");
}
