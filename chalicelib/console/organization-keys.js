// Organization settings → Security keys: every member's keys, whether each counts under the
// policy, searching them by their owner's user ID, and deleting one (ending its owner's sessions
// too, if the admin asks; a member's page deletes theirs the same way). The admin's own keys are
// "yours".

import { api, segment } from "./api.js";
import { explained } from "./messages.js";
import { isYou, loadMore, organization, organizationPage, screen } from "./organization-screen.js";
import { memberAddress } from "./organization-sections.js";
import { modelText } from "./policy.js";
import {
  actionsCell, ago, announce, cell, confirmAction, emptyRow, h, keyId, policyStatus, row, run, trashButton,
} from "./ui.js";

const elements = screen.keys;
const names = new Map(); // key ID → its name, for events that name a key by ID only
let next = null; // the cursor of the list's next page
let searched = ""; // the start of the owners' user IDs listed, "" for everyone

const SEARCH_PAUSE_MS = 300; // one request per word typed, not per letter

// The keys list as searched; every read of it (a reload, the next page) keeps the search.
export function keysPath() {
  return searched ? `org/mfa/keys?search=${encodeURIComponent(searched)}` : "org/mfa/keys";
}

export function keyName(keyIdentifier) {
  return names.get(keyIdentifier);
}

export function renderKeys({ keys, next: cursor }, { append }) {
  next = cursor ?? null;
  if (!append) names.clear();
  for (const key of keys) names.set(key.id, key.name);
  const rows = keys.map((key) => {
    const owner = isYou(key.user.id) ? "You" : key.user.name || key.user.id;
    return row({ dataset: { keyId: key.id } },
      cell("Member", h("a", { href: memberAddress(key.user.id) }, owner)),
      cell("Name", key.name),
      cell("Key ID", keyId(key.id)),
      cell("Model", modelText(key)),
      cell("Policy", policyStatus(key)),
      cell("Added", ago(key.created_at)),
      cell("Last used", ago(key.last_used_at)),
      actionsCell(trashButton({
        label: isYou(key.user.id) ? `Delete your key ${key.name}` : `Delete ${key.name} of ${owner}`,
        onclick: (event) => deleteMemberKey(event.currentTarget, key, owner),
      })),
    );
  });
  if (append) elements.list.append(...rows);
  else {
    const none = searched ? `No security key of a member whose user ID starts with “${searched}”.` : "No member has a security key yet.";
    elements.list.replaceChildren(...(rows.length ? rows : [emptyRow(8, none)]));
  }
  elements.more.hidden = !next;
  return rows;
}

export function forgetKeys() {
  next = null;
  searched = "";
  elements.search.value = "";
  names.clear();
  elements.list.replaceChildren();
  elements.more.hidden = true;
}

// After the deletion, focus goes to the heading of the card the key was deleted from.
export async function deleteMemberKey(button, key, owner) {
  const heading = button.closest("section.card")?.querySelector("h2") ?? elements.title;
  const own = isYou(key.user.id);
  const endSessions = { label: own ? "End your other sessions too" : `End every session of ${owner} too`, checked: false };
  const confirmed = await confirmAction(own
    ? {
      title: `Delete your key “${key.name}”?`,
      text: `You will no longer be able to sign in with this security key (key ID ${key.id}), and your other sessions `
        + "that passed the security key check with it end. While MFA is enforced, your last key cannot be deleted.",
      confirm: "Delete key",
      choice: endSessions,
    }
    : {
      title: `Delete “${key.name}” of ${owner}?`,
      text: `${owner} will no longer be able to sign in with this security key (key ID ${key.id}), and their sessions `
        + "that passed the security key check with it end. While MFA is enforced, a member's last key cannot be "
        + "deleted: offboard them to remove it.",
      confirm: "Delete key",
      choice: endSessions,
    });
  if (!confirmed) return;
  await run(button, async () => {
    try {
      await api.delete(`org/members/${segment(key.user.id)}/mfa/keys/${segment(key.id)}`);
    } catch (error) {
      if (error?.code !== "LastKeyRequired") throw error;
      // The list may have been out of date: the page shows the keys as they are (ui.js run), and
      // says why this one stays.
      throw Object.assign(explained(own
        ? `Your organization enforces MFA, so you must keep at least one security key: “${key.name}” is your last one, `
          + "and it was not deleted."
        : `Your organization enforces MFA, so ${owner} must keep at least one security key: “${key.name}” is their `
          + `last one, and it was not deleted. To remove it, offboard ${owner}.`), { cause: error });
    }
    if (endSessions.checked) await api.delete(`org/members/${segment(key.user.id)}/sessions`);
    await organization.reload();
    announce((own ? `Your security key “${key.name}” was deleted.` : `Security key “${key.name}” of ${owner} was deleted.`)
      + (endSessions.checked ? (own ? " Your other sessions were ended." : ` Every session of ${owner} was ended.`) : ""));
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  });
}

elements.more.addEventListener("click", (event) => run(event.currentTarget, () => loadMore(keysPath(), next, renderKeys)));

// The API searches: a search finds keys on pages not loaded yet, too.
async function search() {
  const wanted = elements.search.value.trim();
  if (wanted === searched) return;
  searched = wanted;
  renderKeys(await api.get(keysPath(), { signal: organizationPage.signal }), { append: false });
}

elements.search.addEventListener("input", () => organizationPage.after("keys-search", SEARCH_PAUSE_MS, () => run(null, search)));
elements.searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  organizationPage.cancel("keys-search");
  run(null, search);
});
