// The demo's language, made by the project: short English sentences about films, meals, books and places, from
// templates and a small lexicon. The pretraining corpus uses it without labels; the demo dataset labels the
// sentiment of reviews, which needs negation ("not good") and intensifiers, so a pretrained backbone helps.
import { Rng } from '../rng.js';

const SUBJECTS = [
  'the movie',
  'the film',
  'the book',
  'the meal',
  'the soup',
  'the hotel',
  'the show',
  'the album',
  'the game',
  'the play',
  'the cafe',
  'the story',
  'the trip',
  'the concert',
  'the room',
  'the ending',
];
const GOOD = [
  'good',
  'great',
  'wonderful',
  'excellent',
  'lovely',
  'brilliant',
  'fun',
  'charming',
  'superb',
  'delightful',
  'enjoyable',
  'beautiful',
];
const BAD = [
  'bad',
  'awful',
  'terrible',
  'boring',
  'dull',
  'poor',
  'weak',
  'horrible',
  'bland',
  'disappointing',
  'tedious',
  'ugly',
];
const INTENS = ['very', 'really', 'truly', 'quite', 'rather', 'so'];
const NEUTRAL_VERBS = ['starts', 'ends', 'opens', 'closes', 'runs', 'lasts'];
const TIMES = [
  'at noon',
  'at night',
  'in the morning',
  'on sunday',
  'in june',
  'after lunch',
  'before dinner',
  'for two hours',
];
const PEOPLE = [
  'my friend',
  'my sister',
  'the critic',
  'our guide',
  'the waiter',
  'my father',
  'a stranger',
  'the teacher',
];
const FEEL = ['said', 'thought', 'felt', 'wrote', 'told me'];
const CONNECT = ['and', 'but', 'so', 'because'];

export const LEXICON: string[] = [
  ...new Set([
    ...SUBJECTS.flatMap((s) => s.split(' ')),
    ...GOOD,
    ...BAD,
    ...INTENS,
    ...NEUTRAL_VERBS,
    ...TIMES.flatMap((s) => s.split(' ')),
    ...PEOPLE.flatMap((s) => s.split(' ')),
    ...FEEL.flatMap((s) => s.split(' ')),
    ...CONNECT,
    'was',
    'is',
    'not',
    'it',
    'that',
    'i',
    'we',
    'liked',
    'hated',
    'loved',
    'disliked',
    'at',
    'all',
    'never',
    'again',
    'would',
    'go',
    'see',
    'read',
    'recommend',
    'a',
    'to',
    'everyone',
    'nobody',
    'of',
    'bit',
    'little',
    'too',
    'long',
    'short',
    'will',
  ]),
].sort();

const pick = <T>(xs: T[], rng: Rng): T => xs[rng.int(xs.length)];

/** Which adjectives a review may use: all, the first half of each list, or the second half (held out). */
export type AdjectiveSet = 'all' | 'seen' | 'unseen';

function adjectives(list: string[], set: AdjectiveSet): string[] {
  const h = list.length / 2;
  return set === 'all' ? list : set === 'seen' ? list.slice(0, h) : list.slice(h);
}

/** One review and its sentiment (1 positive, 0 negative). Negation flips the adjective's polarity. */
export function review(rng: Rng, set: AdjectiveSet = 'all'): { text: string; label: number } {
  const positive = rng.next() < 0.5;
  const negate = rng.next() < 0.35;
  const adjPositive = negate ? !positive : positive;
  const adj = pick(adjectives(adjPositive ? GOOD : BAD, set), rng);
  const intens = rng.next() < 0.4 ? `${pick(INTENS, rng)} ` : '';
  const subj = pick(SUBJECTS, rng);
  const core = negate
    ? pick(
        [`${subj} was not ${intens}${adj}`, `${subj} is not ${adj} at all`, `i never thought ${subj} was ${adj}`],
        rng,
      )
    : pick([`${subj} was ${intens}${adj}`, `${subj} is ${intens}${adj}`, `i thought ${subj} was ${intens}${adj}`], rng);
  const tail =
    set === 'all' && rng.next() < 0.4
      ? positive
        ? pick([' i would recommend it to everyone', ' we loved it', ' i will go again'], rng)
        : pick([' i would not recommend it', ' we hated it', ' never again'], rng)
      : '';
  return { text: `${core}${tail}`.replace(/\s+/g, ' ').trim(), label: positive ? 1 : 0 };
}

/** An unlabelled sentence of the same language (reviews, plain statements, reported speech). */
export function sentence(rng: Rng): string {
  const r = rng.next();
  if (r < 0.5) return review(rng).text;
  if (r < 0.75) return `${pick(SUBJECTS, rng)} ${pick(NEUTRAL_VERBS, rng)} ${pick(TIMES, rng)}`;
  const a = review(rng).text,
    b = review(rng).text;
  return `${pick(PEOPLE, rng)} ${pick(FEEL, rng)} that ${a} ${pick(CONNECT, rng)} ${b}`;
}

export function corpus(n: number, seed: number): string[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => sentence(rng));
}

export function reviews(n: number, seed: number, set: AdjectiveSet = 'all'): { text: string; label: number }[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => review(rng, set));
}
