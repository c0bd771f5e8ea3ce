// Organization settings → Overview: the checklist of what enforcing MFA depends on — enforcement
// itself, backup credentials, the admin's own security key, the members still without one, and
// coverage — each in words, with a link to the section where it is acted on.

import { complianceSentence } from "./compliance.js";
import { isBackupSession, organization, screen } from "./organization-screen.js";
import { sectionAddress } from "./organization-sections.js";
import { WORDS, counted, partOf } from "./plural.js";
import { h, when } from "./ui.js";

const elements = screen.overview;

function item(element, label, text, link) {
  element.replaceChildren(h("strong", {}, `${label}: `), text, " ", link);
}

const go = (href, text) => h("a", { href }, text);

let last = null; // what the overview shows: { mfa, backups, preview }

// Shows what GET /org/mfa (`mfa`), the backup credentials and the enforcement preview (which counts
// the members without a key whatever the size of the organization) say; a part left out stays as
// last shown (a recount's end brings only `mfa`).
export function renderOverview(parts) {
  last = { ...last, ...parts };
  if (last.mfa && last.backups && last.preview) render(last);
}

function render({ mfa, backups, preview }) {
  item(elements.enforcement, "Multi-factor authentication",
    mfa.enforced
      ? h("span", {}, "Enforced for everyone", mfa.enforced_at ? [" since ", when(mfa.enforced_at)] : "", ".")
      : "Not enforced: members sign in with a security key only if they added one.",
    go(sectionAddress("rollout"), mfa.enforced ? "See the roll-out" : "Plan the roll-out"));

  item(elements.backup, "Backup credentials",
    backups.length
      ? `Ready: the organization has ${counted(backups.length, WORDS.backupCredential)}.`
      : "None. They are the way back in when the identity provider or the security keys are lost: create them "
        + "before enforcing MFA.",
    go(sectionAddress("backup-credentials"), "Manage backup credentials"));

  const me = organization.session.me;
  const ownKeys = me.mfa.key_count;
  item(elements.ownKey, "Your own security key",
    isBackupSession()
      ? "You signed in with backup credentials, which hold no security key."
      : ownKeys
        ? `Ready: you hold ${counted(ownKeys, WORDS.securityKey)}.`
        : "None. Register one before enforcing MFA.",
    isBackupSession() ? null : go("#/personal", ownKeys ? "Manage your own keys" : "Add a key of your own"));

  const without = preview.members_without_key;
  item(elements.members, "Members without a security key",
    without === 0
      ? "None: every member has a security key."
      : `${partOf(without, preview.members_total, WORDS.member, WORDS.has)} no security key yet.`,
    go(sectionAddress("members"), "See the members"));

  item(elements.coverage, "Coverage", `${complianceSentence(mfa)}.`.replace(/…\.$/, "…"),
    go(sectionAddress("policy"), "See the authenticator policy"));
}

export function forgetOverview() {
  last = null;
  for (const element of Object.values(elements)) element.replaceChildren();
}
