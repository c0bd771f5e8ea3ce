// A settings page's timers and requests, with one owner: the router enters a page when it shows
// it and leaves it when another page is shown or the session ends, and leaving stops every timer
// the page started and aborts the requests they made — so nothing of one page, or of one person's
// session, keeps running behind the next.
//
// A page also says how to reload what it shows: after a refusal that may mean the page showed what
// is no longer so (ui.js run), and when keyward can be reached again (connection.js).

const pages = new Set();

export class Page {
  #timers = new Map(); // name → timeout ID: one pending run per name
  #requests = new AbortController();
  #shown = false;
  #onLeave = [];
  #reload = async () => {};

  constructor() {
    pages.add(this);
  }

  // `reload` reads again what the page shows and shows it, keeping what the person is typing.
  reloadsWith(reload) {
    this.#reload = reload;
  }

  async reload() {
    if (this.#shown) await this.#reload();
  }

  // `hook` takes off the page what must not outlive it (a secret shown once) when it is left.
  whenLeft(hook) {
    this.#onLeave.push(hook);
  }

  get shown() {
    return this.#shown;
  }

  enter() {
    if (this.#shown) return;
    this.#shown = true;
    this.#requests = new AbortController();
  }

  leave() {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#requests.abort();
    const wasShown = this.#shown;
    this.#shown = false;
    if (wasShown) for (const hook of this.#onLeave) hook();
  }

  // Runs `task` in `ms` while the page is shown; a later call with the same name replaces it.
  after(name, ms, task) {
    this.cancel(name);
    if (!this.#shown) return;
    this.#timers.set(name, setTimeout(() => {
      this.#timers.delete(name);
      if (this.#shown) task();
    }, ms));
  }

  cancel(name) {
    clearTimeout(this.#timers.get(name));
    this.#timers.delete(name);
  }

  pending(name) {
    return this.#timers.has(name);
  }

  // For the page's own requests: aborted when the page is left, so a late answer renders nothing.
  get signal() {
    return this.#requests.signal;
  }
}

// The page shown, if a settings page is (not the sign-in or MFA screens).
export function shownPage() {
  return [...pages].find((page) => page.shown) ?? null;
}
