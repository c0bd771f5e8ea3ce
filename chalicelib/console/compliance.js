// Compliance as the organization page shows it: the figure of members holding an accepted
// security key, or that keyward is recounting it after a policy change; and the admins the
// enforcement preview names because they hold no key.

import { api } from "./api.js";
import { WORDS, counted, form, partOf } from "./plural.js";
import { h, run } from "./ui.js";

const RECOUNT_POLL_MS = 1000;

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

// While the figure is recounted, ask again every second and show the result once it is done; the
// page (page.js) owns the timer, which stops when the page is left.
export function watchRecount(mfa, render, page) {
  if (mfa.compliance?.state !== "recounting") {
    page.cancel("recount");
    return;
  }
  page.after("recount", RECOUNT_POLL_MS,
    () => run(null, async () => render(await api.get("org/mfa", { signal: page.signal }))));
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
  if (member.compliant === null) return h("span", { class: "pill" }, "Being recounted");
  if (member.compliant) return h("span", { class: "pill ok" }, "Has a security key");
  return member.key_count > 0
    ? h("span", { class: "pill warn" }, "No accepted security key")
    : h("span", { class: "pill warn" }, "No security key");
}
