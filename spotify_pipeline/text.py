"""Spelling rules shared by matching and search (plain Python, no dependencies): one rule, so a song that
matches a Spotify track under some spelling is also found by a search with that spelling."""

#: Letters NFKD leaves whole but that hand-typed libraries and queries spell with plain ASCII (ø, æ, ß, ł ...).
ASCII_LETTERS = str.maketrans(
    {
        "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "ł": "l", "Ł": "L",
        "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ı": "i",
    }
)
