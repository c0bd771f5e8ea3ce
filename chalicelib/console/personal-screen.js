// The personal settings screen's elements, looked up in this one place (personal.js, and the
// registration deadline rollout.js puts under the MFA state).

import { $ } from "./ui.js";

export const personalScreen = {
  root: $("screen-personal"),
  title: $("personal-title"),
  mfaState: $("personal-mfa-state"),
  backupNotice: $("personal-backup-notice"),
  keys: { area: $("personal-keys-area"), list: $("personal-keys"), lastKeyReason: $("last-key-reason") },
  secondKey: { root: $("second-key"), add: $("second-key-add"), later: $("second-key-later") },
  addKey: {
    form: $("add-key-form"),
    name: $("add-key-name"),
    codeField: $("add-key-code-field"),
    code: $("add-key-code"),
    button: $("add-key-button"),
  },
  disable: { area: $("disable-mfa-area"), button: $("disable-mfa"), reason: $("disable-mfa-reason") },
  sessions: { title: $("sessions-title"), list: $("sessions"), endOthers: $("sessions-end-others") },
};
