// Whether keyward can be reached. While a request cannot reach it (the network fails, or a gateway
// answers 502, 503 or 504 for it), one banner at the top of the page says so and tries again with a
// growing pause: it reads again what the page shows (app.js says how), never sends a change again —
// a change that did not get through is said to be not saved, and its control shows the stored
// state. The first answer from keyward takes the banner away.

import { frame, h } from "./ui.js";

// Seconds before each try, the last one repeating.
const RETRY_AFTER_S = [5, 10, 20, 30, 60];

let banner = null; // built on first use
let tries = 0;
let timer = null;
let waiting = 0; // the pause before the try now waiting, in seconds
let unsaved = null; // what became of a change that failed since keyward was last reached
let retry = async () => {};

// `handler` reads again what the screen shows (or anything, when nothing is shown).
export function retryWith(handler) {
  retry = handler;
}

function build() {
  const built = {
    root: h("div", { id: "offline", class: "warning offline", hidden: true }),
    // Said once, when keyward is first found unreachable; what follows is said politely.
    alert: h("p", { id: "offline-alert", role: "alert" }),
    status: h("p", { id: "offline-status", role: "status" }),
    retryNow: h("button", { type: "button", id: "offline-retry" }, "Retry now"),
  };
  built.root.append(built.alert, built.status, built.retryNow);
  built.retryNow.addEventListener("click", () => tryAgain());
  frame.messages.before(built.root);
  return built;
}

// A request found keyward unreachable; `change` is what became of the change it carried, if any
// ("was not saved", "may not have been saved").
export function unreachable({ change }) {
  banner ??= build();
  if (banner.root.hidden) {
    banner.root.hidden = false;
    banner.alert.textContent = "keyward cannot be reached.";
  }
  unsaved = change ?? unsaved;
  if (timer === null) {
    // A try already waiting keeps its pause; otherwise the next one waits longer than the last.
    waiting = RETRY_AFTER_S[Math.min(tries, RETRY_AFTER_S.length - 1)];
    tries += 1;
    timer = setTimeout(tryAgain, waiting * 1000);
  }
  banner.status.textContent = (unsaved ? `Your change ${unsaved}. ` : "") + `Retrying in ${waiting} s…`;
}

// keyward answered (anything, a refusal too): the banner goes, the next failure starts afresh.
export function reached() {
  tries = 0;
  unsaved = null;
  clearTimeout(timer);
  timer = null;
  if (!banner || banner.root.hidden) return;
  banner.root.hidden = true;
  banner.alert.textContent = "";
  banner.status.textContent = "";
}

async function tryAgain() {
  clearTimeout(timer);
  timer = null;
  banner.status.textContent = "Retrying now…";
  try {
    await retry();
  } catch {
    // Said where it belongs: an unreachable keyward by the banner, any other answer by its screen.
  }
  // A try that asked nothing (the page was left meanwhile) still leads to the next one.
  if (!banner.root.hidden && timer === null) unreachable({ change: false });
}
