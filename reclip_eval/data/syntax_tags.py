"""Part-of-speech priorities for syntax text reduction (models/text_reduction.py): words -> 1 noun, 2 adjective,
3 verb, 4 anything else, the order in which CLIPA's syntax masking keeps them (open_clip's `get_order` on Penn tags).

Two taggers, registered by name; a run records which one it used (`resolve_tagger`):

- `nltk-perceptron`: NLTK's averaged perceptron tagger, in context, as open_clip's `syntax_mask_tokenize` tags.
  Used when its data (`averaged_perceptron_tagger_eng`) is installed: `python -m nltk.downloader
  averaged_perceptron_tagger_eng`. It cannot be downloaded on this project's machines.
- `wordnet-lexicon`: out of context, from the WordNet 3.0 database (Debian: `apt-get install wordnet-base
  wordnet-sense-index`; or NLTK's `wordnet` data): a word's part of speech is the one whose senses of its base form
  (WordNet's morphy) are tagged most often in SemCor (`cntlist.rev`), then the one with most senses, nouns first on
  ties; function words, numbers and punctuation are "other". A lexicon tagger is wrong where context decides
  ("a square table" tags `square` a noun), which is why the perceptron is preferred when it is there.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path

from reclip_eval.errors import ReclipError
from reclip_eval.paths import cache_dir
from reclip_eval.registry import Registry

NOUN, ADJECTIVE, VERB, OTHER = 1, 2, 3, 4
Tagger = Callable[[list[str]], list[int]]
TAGGERS: Registry[Callable[[], Tagger]] = Registry("part-of-speech tagger")
# Tried in this order when a recipe does not name one.
PREFERENCE = ("nltk-perceptron", "wordnet-lexicon")
DEBIAN_WORDNET = Path("/usr/share/wordnet")
# WordNet 3.0's lexicographer files, in file-number order (lexnames(5WN)): NLTK's reader opens a `lexnames` file
# that Debian's package does not ship.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl").split()
_LEXNAME_POS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
# Closed-class words (determiners, pronouns, prepositions, conjunctions, particles, number words): WordNet lists
# some of them as rare nouns or adjectives ("a": vitamin A; "in": inch; "two": adjective), a tagger never would.
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every no all both either neither another such what which whose
i me my mine you your yours he him his she her hers it its we us our ours they them their theirs who whom
myself yourself himself herself itself ourselves themselves one ones
of in on at by for with without from to into onto upon over under above below between among through across
along around behind beside besides beyond near off out up down about against before after during until since
within toward towards via per than like as
and or but nor so yet if because while although though whether either
not n't 's 't 're 've 'm 'll 'd there here
zero two three four five six seven eight nine ten eleven twelve hundred thousand million
""".split())


def priorities_from_penn(tags: list[str]) -> list[int]:
    """Penn Treebank tags -> priorities (open_clip's `get_order`: NN*, JJ*, VB*, the rest)."""
    return [NOUN if t.startswith("NN") else ADJECTIVE if t.startswith("JJ") else VERB if t.startswith("VB")
            else OTHER for t in tags]


@TAGGERS.register("nltk-perceptron")
def nltk_perceptron() -> Tagger:
    import nltk

    nltk.data.find("taggers/averaged_perceptron_tagger_eng/")  # LookupError when its data is not installed
    return lambda words: priorities_from_penn([tag for _, tag in nltk.pos_tag(words)])


def wordnet_root() -> Path:
    """A WordNet 3.0 folder NLTK's reader accepts: NLTK's own `corpora/wordnet` if installed, else a copy of
    Debian's database (with `lexnames`) under the cache: NLTK refuses files that link outside its data path."""
    import nltk

    try:
        return Path(str(nltk.data.find("corpora/wordnet")))
    except LookupError:
        pass
    source = Path(os.environ.get("RECLIP_WORDNET_DIR", DEBIAN_WORDNET))
    if not (source / "index.sense").is_file() or not (source / "data.noun").is_file():
        raise LookupError(f"no WordNet database at {source} (data.noun and index.sense expected)")
    data_path = cache_dir() / "nltk_data"
    if str(data_path) not in nltk.data.path:  # NLTK reads only under its data path
        nltk.data.path.append(str(data_path))
    root = data_path / "corpora" / "wordnet"
    if not (root / "lexnames").is_file():
        partial = root.with_name("wordnet.partial")
        shutil.rmtree(partial, ignore_errors=True)  # our own half-written copy, never the user's files
        partial.mkdir(parents=True)
        for file in source.iterdir():
            if file.is_file():
                shutil.copyfile(file, partial / file.name)
        lexnames = "".join(f"{i:02d}\t{name}\t{_LEXNAME_POS[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))
        (partial / "lexnames").write_text(lexnames)  # written last: its presence marks a complete copy
        partial.replace(root)
    return Path(str(nltk.data.find("corpora/wordnet")))


@TAGGERS.register("wordnet-lexicon")
def wordnet_lexicon() -> Tagger:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = wordnet_root()
    with warnings.catch_warnings():  # "multilingual functions are not available": we use none of them
        warnings.simplefilter("ignore")
        wordnet = WordNetCorpusReader(str(root), None)

    @lru_cache(maxsize=65536)
    def word_priority(word: str) -> int:
        if word in FUNCTION_WORDS or not any(c.isalpha() for c in word):
            return OTHER
        scores = {}
        for pos, priority in (("n", NOUN), ("a", ADJECTIVE), ("v", VERB), ("r", OTHER)):
            lemmas = [lemma for base in {wordnet.morphy(word, pos)} - {None} for lemma in wordnet.lemmas(base, pos)]
            if lemmas:
                scores[priority] = (sum(lemma.count() for lemma in lemmas), len(lemmas), -priority)
        # A word WordNet does not know (a name, a rare form) is most likely a noun, as taggers default to.
        return max(scores, key=scores.get) if scores else NOUN

    return lambda words: [word_priority(word.lower()) for word in words]


def first_message_line(error: BaseException) -> str:
    """The first line of an exception's text that says something: NLTK's LookupError text is a box drawn with
    rows of asterisks around "Resource 'x' not found." and the download instructions."""
    for line in str(error).splitlines():
        line = line.strip(" *\t")
        if any(c.isalnum() for c in line):
            return line
    return type(error).__name__


def resolve_tagger(name: str | None = None) -> str:
    """The tagger to use: `name`, or the first of PREFERENCE whose data is installed; a one-line error saying how to
    install one when none is. Checked before any data is read."""
    names = [name] if name else list(PREFERENCE)
    problems = []
    for candidate in names:
        try:
            load_tagger(candidate)
            return candidate
        except (LookupError, ImportError) as e:
            problems.append(f"{candidate}: {first_message_line(e)}")
    raise ReclipError("syntax text reduction needs a part-of-speech tagger and none is installed ("
                      + "; ".join(problems) + "): install NLTK's tagger data (python -m nltk.downloader "
                      "averaged_perceptron_tagger_eng) or WordNet (apt-get install wordnet-base wordnet-sense-index)")


@cache
def load_tagger(name: str) -> Tagger:
    """The tagger `name`, loaded once per process (WordNet takes a few seconds)."""
    return TAGGERS.get(name)()


# Once per process, a forked one included: NLTK's WordNet reader seeks and reads file objects it keeps open, and a
# forked data worker inherits them with their offsets shared with its siblings, so two workers tagging at once read
# each other's lines (a run on 2 workers crashed on a None synset). A child loads its own.
os.register_at_fork(after_in_child=load_tagger.cache_clear)
