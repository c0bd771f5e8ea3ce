// The organization screen's elements, looked up in this one place, and what its sections share:
// the page's owner of timers (page.js), the session it shows, and how to reload what it shows.
// (The cards built by policy.js, rollout.js and webhooks.js look up their own elements.)

import { api } from "./api.js";
import { Page } from "./page.js";
import { $ } from "./ui.js";

export const screen = {
  root: $("screen-organization"),
  orgName: $("org-name"),
  updated: $("org-updated"),
  refresh: $("org-refresh"),
  enforcement: {
    toggle: $("enforce"),
    reason: $("enforce-reason"),
    warning: $("enforce-warning"),
    help: $("enforce-help"),
    enforcedHelp: $("enforced-help"),
    since: $("enforced-since"),
    invalidation: $("invalidation"),
    meter: $("compliance-meter"),
    complianceText: $("compliance-text"),
  },
  members: { list: $("members"), more: $("members-more") },
  keys: { title: $("org-keys-title"), list: $("org-keys"), more: $("org-keys-more") },
  backup: {
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
    member: $("audit-member"),
    list: $("audit"),
    more: $("audit-more"),
  },
};

// Leaving the page stops its timers (the clean-up's and the recount's polling) and aborts their
// requests; the router enters and leaves it (app.js).
export const organizationPage = new Page();

// Set by organization.js: the session shown, reloading the whole page or only its lists, and
// saying when it was last brought up to date.
export const organization = {
  session: null,
  reload: async () => {},
  reloadLists: async () => {},
  loaded: () => {},
};

export function isBackupSession() {
  return organization.session.me.user.id.startsWith("backup:");
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
