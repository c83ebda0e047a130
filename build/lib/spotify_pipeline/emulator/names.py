"""Word lists and name builders for the synthetic catalogue.

The lists deliberately contain accents, apostrophes and ampersands: the sample catalogue derives
"title drift" (accents stripped, punctuation changed) from them, as real local libraries drift from
Spotify's spelling. Changing any list changes every generated name, so treat them as frozen data:
append only at the end if you must, and regenerate the sample CSV afterwards.
"""

from __future__ import annotations

import random

FIRST_NAMES = (
    "Ava", "Noah", "Mia", "Liam", "Zoë", "Elijah", "Chloé", "Mateo", "Renée", "Lucas", "Nina", "Oscar",
    "Ingrid", "Søren", "Amélie", "Jonas", "Freya", "Tomás", "Isabel", "Rafael", "Léa", "Hugo", "Maya",
    "Felix", "Clara", "Diego", "Elena", "Marcus", "Aurélien", "Hana", "Kenji", "Priya", "Omar", "Sofia",
    "Björn", "Luna", "Ezra", "Ruby", "Caleb", "Iris", "Julián", "Nora", "Theo", "Ada", "Miles", "June",
    "Otis", "Pearl", "Silas", "Vera", "Jasper", "Cleo", "Rhea", "Dmitri", "Anaïs", "Malik", "Greta",
    "Lorenzo", "Yara", "Éloïse", "Ravi", "Talia", "Wren", "Ansel", "Marisol", "Idris", "Saoirse", "Bruno",
)
LAST_NAMES = (
    "Hart", "Moreno", "Lindqvist", "Okafor", "Delacroix", "Park", "Novak", "Ibáñez", "Whitfield", "Russo",
    "Andersen", "Mbeki", "Castellano", "Fischer", "Kowalski", "Nakamura", "O'Brien", "Valdés", "Sato",
    "Holloway", "Brennan", "Quintero", "Larsen", "Haddad", "Bishop", "Marlowe", "Petrov", "Ferreira",
    "Gallagher", "Sørensen", "Abernathy", "Reyes", "Kim", "Lefèvre", "Duarte", "Winslow", "Ashby",
    "Caruso", "Mendes", "Thorne", "Everly", "Blackwood", "Oyelaran", "Rivera", "Sinclair", "Vance",
    "Moreau", "Eriksen", "Castillo", "Hayward", "Lowell", "Strand", "Adeyemi", "Fontaine", "Keller",
)
ADJECTIVES = (
    "Golden", "Silent", "Electric", "Velvet", "Broken", "Neon", "Midnight", "Wild", "Hollow", "Crystal",
    "Lonely", "Burning", "Paper", "Silver", "Restless", "Gentle", "Frozen", "Secret", "Distant", "Crimson",
    "Sweet", "Faded", "Blue", "Endless", "Little", "Savage", "Tender", "Bitter", "Honest", "Drunken",
    "Sleepless", "Heavy", "Bright", "Wicked", "Quiet", "Northern", "Southern", "Lucky", "Hungry", "Empty",
    "Radiant", "Rusty", "Cosmic", "Sunday", "Summer", "Winter", "Violet", "Strange", "Careless", "Holy",
)
NOUNS = (
    "Heart", "River", "Lights", "Fire", "Dreams", "Highway", "Ocean", "Garden", "City", "Moon", "Rain",
    "Ghost", "Mirror", "Shadow", "Horizon", "Thunder", "Wolves", "Diamonds", "Echo", "Satellite", "Roses",
    "Window", "Letters", "Summer", "Stranger", "Avenue", "Parade", "Fever", "Static", "Harbor", "Kingdom",
    "Machine", "Animals", "Sparrow", "Coastline", "Engine", "Carousel", "Lanterns", "Tides", "Vacation",
    "Comet", "Skyline", "Feathers", "Jungle", "Monsters", "Rodeo", "Saints", "Sirens", "Tigers", "Voices",
    "Weekend", "Wires", "Years", "Island", "Desert", "Chorus", "Ballroom", "Cathedral", "Orchard", "Signal",
)
VERBS = (
    "Hold", "Run", "Call", "Dance", "Fall", "Burn", "Wait", "Stay", "Breathe", "Drive", "Follow", "Chase",
    "Shine", "Break", "Forget", "Remember", "Leave", "Bring", "Keep", "Find", "Save", "Kiss", "Touch", "Wake",
)
PLACES = (
    "Lisbon", "Tokyo", "Memphis", "Berlin", "Paris", "Havana", "Brooklyn", "Montréal", "Reykjavík",
    "São Paulo", "Marseille", "Nashville", "Detroit", "Kyoto", "Oslo", "Dublin", "Seville", "Lagos",
)
ALBUM_SUFFIXES = ("", "", "", "", " (Deluxe Edition)", " (Expanded Edition)", " (Anniversary Edition)")
LABELS = (
    "Northbound Records", "Glasshouse Music", "Paper Moon Recordings", "Blue Harbor", "Static Bloom",
    "Orchard Lane Records", "Velvet Tiger", "Mono/Stereo", "Lantern Sound", "Copper Crown Records",
    "Tidewater", "Ninefold Music", "Sundial Recordings", "Hollow Oak", "Brightline Records",
)
GENRES = (
    "indie pop", "indie rock", "dream pop", "synthpop", "alt country", "neo soul", "house", "folk",
    "post-punk", "shoegaze", "hip hop", "r&b", "jazz", "bossa nova", "singer-songwriter", "electronica",
    "garage rock", "disco", "afrobeats", "latin pop", "ambient", "country", "k-pop", "trip hop",
)


def artist_name(rng: random.Random) -> str:
    """A plausible artist or band name."""
    style = rng.random()
    if style < 0.42:
        return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    if style < 0.60:
        return f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    if style < 0.72:
        return f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    if style < 0.82:
        return f"{rng.choice(FIRST_NAMES)} & the {rng.choice(NOUNS)}"
    if style < 0.90:
        return f"{rng.choice(NOUNS)} of {rng.choice(PLACES)}"
    return f"{rng.choice(LAST_NAMES)} {rng.choice(('Brothers', 'Sisters', 'Trio', 'Collective', 'Quartet'))}"


def track_title(rng: random.Random) -> str:
    """A plausible song title; some carry apostrophes, ampersands or accents on purpose."""
    style = rng.random()
    adjective, noun, verb = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS)
    if style < 0.16:
        return f"{adjective} {noun}"
    if style < 0.26:
        return noun
    if style < 0.36:
        return f"{verb} Me {rng.choice(('Closer', 'Down', 'Home', 'Now', 'Again', 'Tonight'))}"
    if style < 0.44:
        return f"Don't {verb} {rng.choice(('Me', 'Away', 'Now', 'the Night', 'It'))}"
    if style < 0.52:
        return f"{noun} & {rng.choice(NOUNS)}"
    if style < 0.60:
        return f"{verb} the {noun}"
    if style < 0.67:
        return f"{noun} in {rng.choice(PLACES)}"
    if style < 0.74:
        return f"I'm {rng.choice(('Not', 'Still', 'Always', 'Never'))} {adjective}"
    if style < 0.80:
        return f"{rng.choice(FIRST_NAMES)}"
    if style < 0.86:
        return f"{adjective} {noun}, {adjective} {rng.choice(NOUNS)}"
    if style < 0.92:
        return f"When the {noun} {rng.choice(('Calls', 'Falls', 'Burns', 'Sleeps', 'Sings'))}"
    return f"{verb} {rng.choice(('On', 'Out', 'Up', 'Away'))}"


def album_title(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.35:
        base = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    elif style < 0.55:
        base = rng.choice(NOUNS)
    elif style < 0.70:
        base = f"{rng.choice(NOUNS)} & {rng.choice(NOUNS)}"
    elif style < 0.85:
        base = f"Songs from {rng.choice(PLACES)}"
    else:
        base = f"The {rng.choice(NOUNS)} Sessions"
    return base + rng.choice(ALBUM_SUFFIXES)
