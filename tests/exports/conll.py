"""A strict reader of CoNLL-2003 files with BIO (IOB2) tags, the test's independent view of the CoNLL export.

Written from the shared task's description (Tjong Kim Sang & De Meulder, CoNLL-2003): one token per line as four
columns `word POS chunk NE` separated by single spaces, an empty line after each sentence, and a
`-DOCSTART- -X- -X- O` line opening each document. The tags are IOB2: `B-X` begins an entity of type X, `I-X`
continues one, so an `I-X` must follow `B-X` or `I-X`. Anything else is refused with its line number, so that a
sloppy export fails here rather than in a customer's training pipeline.

Comment lines, the convention of CoNLL-U and of flair's ColumnCorpus(comment_symbol="#"): a line starting with
"# " before a sentence's first token, which is not itself a token line (the word "#" is written `# _ _ O`), is a
comment on that sentence; `comments=False` refuses them. A comment must be followed by a sentence.

(No reader on PyPI fits: `conllu` reads CoNLL-U, and `seqeval` only scores tag sequences, is unmaintained since
2020 and pulls in scikit-learn.)
"""

import re

_TAG = re.compile(r"^(?:O|[BI]-\S+)$")


class ConllError(ValueError):
    pass


def _is_token_line(columns):
    return len(columns) == 4 and "" not in columns and bool(_TAG.match(columns[3]))


def conll_read(text, *, comments=True):
    """The sentences of a CoNLL-2003 file as lists of (word, tag); documents are counted in `.documents`, and
    `.comments` holds, per sentence, the text of the comment lines before it (without the "# ")."""
    if text and not text.endswith("\n"):
        raise ConllError("the file does not end with a line break")
    sentences, current, pending, sentence_comments = [], [], [], []
    documents = 0
    # str.split("\n"), not splitlines(): a word may hold characters splitlines() breaks at (none of \s does).
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        if line == "":
            if pending and not current:
                raise ConllError(f"line {number}: a comment is not followed by a sentence")
            if current:
                sentences.append(current)
                sentence_comments.append(pending)
                current, pending = [], []
            continue
        columns = line.split(" ")
        if line.startswith("# ") and not current and not _is_token_line(columns):
            if not comments:
                raise ConllError(f"line {number}: a comment line: {line!r}")
            pending.append(line[2:])
            continue
        if len(columns) != 4 or "" in columns:
            raise ConllError(f"line {number}: expected four columns separated by single spaces: {line!r}")
        word, _pos, _chunk, tag = columns
        if re.search(r"\s", word):
            raise ConllError(f"line {number}: whitespace inside a word")
        if not _TAG.match(tag):
            raise ConllError(f"line {number}: {tag!r} is not a BIO tag")
        if word == "-DOCSTART-":
            if current or pending or tag != "O":
                raise ConllError(f"line {number}: -DOCSTART- must stand alone, tagged O")
            documents += 1
            continue
        if tag.startswith("I-"):
            previous = current[-1][1] if current else "O"
            if previous == "O" or previous[2:] != tag[2:]:
                raise ConllError(f"line {number}: {tag} does not continue an entity of its type (after {previous})")
        current.append((word, tag))
    if current or pending:
        raise ConllError("the last sentence is not followed by an empty line")
    return ConllFile(sentences, documents, sentence_comments)


class ConllFile(list):
    def __init__(self, sentences, documents, comments):
        super().__init__(sentences)
        self.documents = documents
        self.comments = comments


def entities(tags):
    """(label, first token, end token exclusive) of each entity of a BIO tag sequence."""
    found, start, label = [], None, None
    for n, tag in enumerate([*tags, "O"]):
        if start is not None and not (tag.startswith("I-") and tag[2:] == label):
            found.append((label, start, n))
            start = label = None
        if tag.startswith("B-"):
            start, label = n, tag[2:]
    return found


def character_spans(text, sentence):
    """The entities of one sentence as character spans of `text`: each word is found in the text in order
    (words may touch where the export split a word at an entity's edge, and must be separated by whitespace only)."""
    offsets, position = [], 0
    for word, _tag in sentence:
        start = text.find(word, position)
        if start < 0 or text[position:start].strip():
            raise ConllError(f"{word!r} is not the next word of the text after offset {position}")
        offsets.append((start, start + len(word)))
        position = start + len(word)
    if text[position:].strip():
        raise ConllError(f"the text goes on after the last word: {text[position:]!r}")
    return sorted((offsets[first][0], offsets[end - 1][1], label)
                  for label, first, end in entities([tag for _word, tag in sentence]))
