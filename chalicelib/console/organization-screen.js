// The organization screen's elements, looked up in this one place, and what its sections share:
// the page's owner of timers (page.js), the session it shows, and how to reload what it shows.
// (The cards that policy.js, rollout.js and webhooks.js build keep their own elements as they build
// them, placed after the cards named here.)

import { api } from "./api.js";
import { Page } from "./page.js";
import { $ } from "./ui.js";

const root = $("screen-organization");

export const screen = {
  root,
  // The sections' links (organization-sections.js).
  sections: { nav: $("org-nav"), links: [...$("org-nav").querySelectorAll("a")] },
  updated: $("org-updated"),
  refresh: $("org-refresh"),
  enforcement: {
    // The state in words, and the way into the roll-out flow, where enforcing is done (rollout.js).
    state: $("enforcement-state"),
    open: $("enforcement-open"),
    warning: $("enforce-warning"),
    invalidation: $("invalidation"),
    meter: $("compliance-meter"),
    complianceText: $("compliance-text"),
  },
  enrollment: {
    passRequired: $("enrollment-pass-required"),
    // A member's enrolment passes, in a panel of the members card.
    passes: {
      panel: $("passes"),
      title: $("passes-title"),
      member: $("passes-member"),
      lifetime: $("pass-lifetime"),
      issue: $("pass-issue"),
      close: $("passes-close"),
      newPass: $("pass-new"),
      newCode: $("pass-new-code"),
      newExpires: $("pass-new-expires"),
      copy: $("pass-copy"),
      done: $("pass-done"),
      list: $("passes-list"),
    },
  },
  overview: {
    enforcement: $("overview-enforcement"),
    backup: $("overview-backup"),
    ownKey: $("overview-own-key"),
    members: $("overview-members"),
    coverage: $("overview-coverage"),
  },
  members: {
    title: $("members-title"), list: $("members"), more: $("members-more"),
    searchForm: $("members-search-form"), search: $("members-search"),
  },
  // A member's own page: their keys, sessions and enrolment passes.
  member: {
    card: $("member-page"),
    title: $("member-title"),
    summary: $("member-summary"),
    missing: $("member-missing"),
    details: $("member-details"),
    keys: $("member-keys"),
    sessions: $("member-sessions"),
    endSessions: $("member-end-sessions"),
  },
  keys: {
    title: $("org-keys-title"), list: $("org-keys"), more: $("org-keys-more"),
    searchForm: $("org-keys-search-form"), search: $("org-keys-search"),
  },
  backup: {
    noWayBack: $("no-way-back"),
    noWayBackCreate: $("no-way-back-create"),
    list: $("backup-list"),
    create: $("backup-create"),
    createReason: $("backup-create-reason"),
    secretBox: $("backup-new"),
    secretTitle: $("backup-new-title"),
    newKeyId: $("backup-new-key-id"),
    newSecret: $("backup-new-secret"),
    copy: $("backup-copy"),
    copyBoth: $("backup-copy-both"),
    done: $("backup-done"),
  },
  audit: {
    filters: $("audit-filters"),
    action: $("audit-action"),
    actor: $("audit-actor"),
    actors: $("audit-actors"),
    member: $("audit-member"),
    since: $("audit-since"),
    until: $("audit-until"),
    timeZone: $("audit-time-zone"),
    apply: $("audit-apply"),
    clear: $("audit-clear"),
    shown: $("audit-shown"),
    exportNdjson: $("audit-export-ndjson"),
    exportCsv: $("audit-export-csv"),
    exportCancel: $("audit-export-cancel"),
    exportProgress: $("audit-export-progress"),
    list: $("audit"),
    more: $("audit-more"),
  },
  // Where the built cards go: roll-out after the multi-factor authentication card, the
  // authenticator policy after the keys, webhooks and the outbox after the audit log.
  cards: {
    first: $("org-mfa-title").closest("section"),
    keys: $("org-keys").closest("section"),
    audit: $("audit-title").closest("section"),
  },
};

// Leaving the page stops its timers (the clean-up's and the recount's polling) and aborts their
// requests; the router enters and leaves it (app.js).
export const organizationPage = new Page();

// Set by organization.js: the session shown, reloading the whole page or only its lists, showing
// a new compliance state everywhere at once, and saying when it was last brought up to date.
export const organization = {
  session: null,
  reload: async () => {},
  reloadLists: async () => {},
  showCoverage: async () => {},
  loaded: () => {},
  // Brings a section up (organization-sections.js), e.g. where a new secret is shown.
  reveal: () => {},
};

export function isBackupSession() {
  return organization.session.me.user.id.startsWith("backup:");
}

// Whether a member of the page is the signed-in person, whom the page calls "you", never by name.
export function isYou(userId) {
  return userId === organization.session.me.user.id;
}

// The next page of a list; focus moves to its first new row, since the button may be gone.
export async function loadMore(path, next, render) {
  const page = await api.get(`${path}${path.includes("?") ? "&" : "?"}next=${encodeURIComponent(next)}`);
  const [first] = render(page, { append: true });
  if (first) {
    first.setAttribute("tabindex", "-1");
    first.focus();
  }
}
