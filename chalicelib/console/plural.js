// Counts in words: which form of a word goes with a number, as English's plural rules say
// (Intl.PluralRules), so that no sentence of the console reads "1 members have" or "1 hours".

const rules = new Intl.PluralRules("en");

// The words the console counts, each with its forms by plural category.
export const WORDS = {
  member: { one: "member", other: "members" },
  admin: { one: "admin", other: "admins" },
  securityKey: { one: "security key", other: "security keys" },
  session: { one: "session", other: "sessions" },
  backupCredential: { one: "backup credential", other: "backup credentials" },
  hour: { one: "hour", other: "hours" },
  failedDelivery: { one: "failed delivery", other: "failed deliveries" },
  // Verbs agree with their subject's count: "1 member has", "2 members have".
  has: { one: "has", other: "have" },
  holds: { one: "holds", other: "hold" },
};

// The form of `word` that goes with `count`: form(1, WORDS.has) → "has".
export function form(count, word) {
  return word[rules.select(count)] ?? word.other;
}

// The count and its word: counted(2, WORDS.member) → "2 members".
export function counted(count, word) {
  return `${count} ${form(count, word)}`;
}

// Part of a whole, the verb agreeing with the part: partOf(1, 5, WORDS.member, WORDS.has) →
// "1 of 5 members has", "2 of 5 members have". None of them agrees as the whole would:
// "0 of 1 member has", "0 of 5 members have".
export function partOf(part, total, word, verb) {
  return `${part} of ${counted(total, word)} ${form(part === 0 ? total : part, verb)}`;
}
