"""Vocabularies and template frames of the `concepts` corpus (data only; see concepts.py).

Rules the data keeps, which tests check:
- no word belongs to two vocabularies, and no free (synonym) slot uses a vocabulary word;
- a frame holds at most one slot per concept and at least one free slot `{~a|b}`;
- every verb's past form differs from its base form (so a tense edit always shows);
- every noun's plural differs from its singular (so a plurality edit always shows).
"""

from __future__ import annotations

# ---- vocabularies ---------------------------------------------------------------------------
# Nouns are (singular, plural); the label value is the singular.
ANIMALS = (
    ("dog", "dogs"), ("cat", "cats"), ("horse", "horses"), ("rabbit", "rabbits"),
    ("fox", "foxes"), ("bird", "birds"), ("cow", "cows"), ("lion", "lions"),
    ("tiger", "tigers"), ("bear", "bears"), ("wolf", "wolves"), ("goat", "goats"),
    ("duck", "ducks"), ("monkey", "monkeys"), ("elephant", "elephants"), ("mouse", "mice"),
    ("frog", "frogs"), ("owl", "owls"),
)  # fmt: skip
PROFESSIONS = (
    ("doctor", "doctors"), ("teacher", "teachers"), ("farmer", "farmers"), ("nurse", "nurses"),
    ("pilot", "pilots"), ("chef", "chefs"), ("lawyer", "lawyers"), ("engineer", "engineers"),
    ("baker", "bakers"), ("painter", "painters"), ("writer", "writers"),
    ("dentist", "dentists"), ("firefighter", "firefighters"), ("scientist", "scientists"),
    ("musician", "musicians"), ("carpenter", "carpenters"), ("waiter", "waiters"),
    ("mechanic", "mechanics"), ("police officer", "police officers"),
    ("librarian", "librarians"),
)  # fmt: skip
FOODS = (
    ("apple", "apples"), ("banana", "bananas"), ("sandwich", "sandwiches"),
    ("cookie", "cookies"), ("pear", "pears"), ("carrot", "carrots"), ("potato", "potatoes"),
    ("tomato", "tomatoes"), ("egg", "eggs"), ("peach", "peaches"), ("muffin", "muffins"),
    ("lemon", "lemons"), ("plum", "plums"), ("onion", "onions"), ("cucumber", "cucumbers"),
    ("pancake", "pancakes"), ("strawberry", "strawberries"), ("cherry", "cherries"),
)  # fmt: skip
VEHICLES = (
    ("bus", "buses"), ("train", "trains"), ("car", "cars"), ("bicycle", "bicycles"),
    ("taxi", "taxis"), ("boat", "boats"), ("plane", "planes"), ("truck", "trucks"),
    ("ferry", "ferries"), ("tram", "trams"), ("motorcycle", "motorcycles"), ("van", "vans"),
)  # fmt: skip
COLORS = (
    "red", "blue", "green", "yellow", "black", "white", "brown", "purple", "orange", "pink",
    "gray", "silver",
)  # fmt: skip
EMOTIONS = (
    "happy", "sad", "angry", "afraid", "surprised", "calm", "excited", "nervous", "proud",
    "lonely", "bored", "worried",
)  # fmt: skip
SENTIMENT_WORDS = {
    "positive": ("wonderful", "great", "excellent", "lovely", "fantastic", "pleasant",
                 "delightful", "superb"),
    "negative": ("terrible", "awful", "horrible", "dreadful", "poor", "unpleasant",
                 "disappointing", "bad"),
}  # fmt: skip
NUMBERS = (
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
)  # fmt: skip
# (noun, preposition phrase before it): "in the park".
PLACES = (
    ("park", "in the"), ("beach", "at the"), ("kitchen", "in the"), ("library", "in the"),
    ("garden", "in the"), ("forest", "in the"), ("market", "at the"), ("station", "at the"),
    ("hospital", "at the"), ("museum", "in the"), ("mountains", "in the"), ("city", "in the"),
    ("village", "in the"), ("river", "by the"), ("office", "at the"), ("airport", "at the"),
    ("farm", "on the"), ("harbor", "at the"),
)  # fmt: skip
SPORTS = (
    "tennis", "soccer", "basketball", "baseball", "golf", "volleyball", "hockey", "rugby",
    "badminton", "handball", "softball",
)  # fmt: skip
WEATHER = (
    "sunny", "rainy", "snowy", "windy", "foggy", "cloudy", "stormy", "hot", "cold", "humid",
)  # fmt: skip
# (noun, preposition phrase before it): "on Monday", "in the morning".
TIMES = (
    ("morning", "in the"), ("afternoon", "in the"), ("evening", "in the"), ("night", "at"),
    ("Monday", "on"), ("Tuesday", "on"), ("Wednesday", "on"), ("Thursday", "on"),
    ("Friday", "on"), ("Saturday", "on"), ("Sunday", "on"), ("winter", "in"),
    ("spring", "in"), ("summer", "in"), ("autumn", "in"),
)  # fmt: skip
CLOTHING = (
    "hat", "coat", "scarf", "shirt", "dress", "jacket", "sweater", "skirt", "belt", "tie",
    "cap", "vest",
)  # fmt: skip

# ---- verbs: base, third person singular present, past ---------------------------------------
VERBS = {
    v[0]: v
    for v in (
        ("eat", "eats", "ate"), ("share", "shares", "shared"), ("buy", "buys", "bought"),
        ("sell", "sells", "sold"), ("feel", "feels", "felt"), ("have", "has", "had"),
        ("play", "plays", "played"), ("watch", "watches", "watched"),
        ("love", "loves", "loved"), ("travel", "travels", "traveled"),
        ("take", "takes", "took"), ("drive", "drives", "drove"), ("wait", "waits", "waited"),
        ("wear", "wears", "wore"), ("lose", "loses", "lost"), ("walk", "walks", "walked"),
        ("sleep", "sleeps", "slept"), ("stay", "stays", "stayed"),
        ("enjoy", "enjoys", "enjoyed"), ("chase", "chases", "chased"), ("run", "runs", "ran"),
        ("see", "sees", "saw"), ("work", "works", "worked"), ("meet", "meets", "met"),
        ("finish", "finishes", "finished"), ("cook", "cooks", "cooked"),
        ("bake", "bakes", "baked"), ("slice", "slices", "sliced"),
        ("wash", "washes", "washed"), ("give", "gives", "gave"),
        ("bring", "brings", "brought"), ("send", "sends", "sent"),
        ("paint", "paints", "painted"), ("draw", "draws", "drew"), ("feed", "feeds", "fed"),
        ("find", "finds", "found"), ("ride", "rides", "rode"), ("miss", "misses", "missed"),
        ("like", "likes", "liked"), ("want", "wants", "wanted"), ("tell", "tells", "told"),
        ("write", "writes", "wrote"), ("recommend", "recommends", "recommended"),
        ("deliver", "delivers", "delivered"), ("carry", "carries", "carried"),
        ("load", "loads", "loaded"), ("visit", "visits", "visited"),
    )
}  # fmt: skip

# ---- template frames ------------------------------------------------------------------------
# Syntax: `{S:animal}` / `{S:profession}` subject (`:color` adds a color adjective), `{V:verb}`
# the verb group (carries tense, negation, question and agreement; `be` is the copula),
# `{a}` a/an, `{food}` `{food:pl}` `{animal}` `{animal:pl}` `{vehicle}` `{vehicle:pl}` nouns,
# `{num}` `{color}` `{emotion}` `{sent}` `{sport}` `{weather}` `{cloth}` words, `{place}`
# `{time}` whole phrases, `{BE_IT}` is/was by tense, `{~a|b}` a free synonym choice.
# A frame starts with its subject and verb; adjuncts are added around it (concepts.py).
FRAMES: dict[str, tuple[str, ...]] = {
    "meal": (
        "{S:animal} {V:eat} {num} {~fresh|ripe} {food:pl}",
        "{S:profession} {V:eat} {a} {~large|big} {food}",
        "{S:animal:color} {V:eat} {a} {food} {~quickly|rapidly|hastily}",
        "{S:profession} {V:share} {num} {food:pl} with a {~friend|neighbor|colleague}",
    ),
    "market": (
        "{S:profession} {V:buy} {num} {food:pl} {~for the family|for the household}",
        "{S:profession} {V:sell} {a} {color} {cloth} to a {~customer|buyer|client}",
        "{S:profession} {V:buy} {a} {~new|brand new} {cloth}",
        "{S:profession} {V:sell} {num} {~large|big} {food:pl}",
    ),
    "feelings": (
        "{S:animal} {V:be} {~very|really|truly} {emotion}",
        "{S:profession} {V:be} {emotion} {~again|once more}",
        "{S:animal:color} {V:be} {~quite|rather} {emotion}",
        "{S:profession} {V:feel} {emotion} after the {~meeting|conference}",
    ),
    "review": (
        "{S:profession} {V:have} {a} {sent} {~time|stay}",
        "{S:profession} {V:cook} {a} {sent} {~meal|dinner}",
        "{S:animal} {V:have} {a} {sent} {~nap|rest}",
        "{S:profession} {V:write} {a} {sent} {~report|letter}",
    ),
    "sports": (
        "{S:profession} {V:play} {sport} {~with friends|with some friends}",
        "{S:profession} {V:watch} {sport} {~on television|on TV}",
        "{S:profession} {V:play} {sport} with {num} {~friends|companions|teammates}",
        "{S:profession} {V:love} {sport} {~a lot|very much}",
    ),
    "travel": (
        "{S:profession} {V:travel} to the {~coast|seaside} by {vehicle}",
        "{S:profession} {V:take} the {vehicle} {~to work|to the job}",
        "{S:profession} {V:drive} {a} {color} {vehicle} {~carefully|cautiously}",
        "{S:profession} {V:wait} for the {vehicle} {~patiently|quietly}",
    ),
    "clothes": (
        "{S:profession} {V:wear} {a} {color} {cloth} {~to the party|to the celebration}",
        "{S:profession} {V:find} {a} {color} {cloth} in the {~closet|wardrobe}",
        "{S:profession} {V:lose} {a} {~nice|fine} {cloth}",
        "{S:profession} {V:wash} the {cloth} {~by hand|with soap}",
    ),
    "weather_talk": (
        "{S:profession} {V:walk} {~home|back home} while it {BE_IT} {weather}",
        "{S:animal} {V:sleep} {~peacefully|quietly} because it {BE_IT} {weather}",
        "{S:animal} {V:stay} {~inside|indoors} on {a} {weather} day",
        "{S:profession} {V:enjoy} the {weather} {~weather|days}",
    ),
    "nature": (
        "{S:animal} {V:chase} {a} {color} {~ball|toy}",
        "{S:animal} {V:run} {~quickly|rapidly} {place}",
        "{S:animal:color} {V:sleep} {~peacefully|quietly}",
        "{S:animal} {V:see} {num} {~small|little} {food:pl}",
    ),
    "work": (
        "{S:profession} {V:work} {~hard|diligently} {place}",
        "{S:profession} {V:meet} {num} {~clients|customers}",
        "{S:profession} {V:finish} the {~report|project} {~quickly|rapidly}",
        "{S:profession} {V:be} {emotion} at the {~meeting|conference}",
    ),
    "kitchen": (
        "{S:profession} {V:cook} {num} {food:pl} for {~dinner|supper}",
        "{S:profession} {V:bake} {a} {sent} {~dessert|treat}",
        "{S:profession} {V:slice} {a} {food} with a {~knife|blade}",
        "{S:profession} {V:wash} {num} {color} {~plates|dishes}",
    ),
    "gift": (
        "{S:profession} {V:give} the {~child|kid} {a} {color} {cloth}",
        "{S:profession} {V:give} the {~neighbors|family} {num} {food:pl}",
        "{S:profession} {V:bring} {a} {food} for the {~child|kid}",
        "{S:profession} {V:send} {a} {sent} {~gift|present}",
    ),
    "painting": (
        "{S:profession} {V:paint} the {~fence|wall} {color}",
        "{S:profession} {V:paint} {a} {color} {animal} {~slowly|patiently}",
        "{S:profession} {V:paint} {num} {animal:pl} {~beautifully|skillfully}",
        "{S:profession} {V:draw} {a} {vehicle} {~carefully|neatly}",
    ),
    "farm": (
        "{S:profession} {V:feed} {num} {animal:pl} {~by hand|with care}",
        "{S:profession} {V:find} {a} {animal} {~behind the barn|near the barn}",
        "{S:animal} {V:eat} {a} {food} {~near the barn|beside the barn}",
        "{S:profession} {V:watch} {num} {animal:pl} {~closely|carefully}",
    ),
    "commute": (
        "{S:profession} {V:ride} {a} {vehicle} {~to work|to the job}",
        "{S:profession} {V:miss} the {vehicle} {~again|once more}",
        "{S:profession} {V:be} {emotion} on the {~crowded|packed} {vehicle}",
        "{S:profession} {V:take} {a} {color} {vehicle} {~home|back home}",
    ),
    "game_day": (
        "{S:profession} {V:be} {emotion} after the {sport} {~game|match}",
        "{S:profession} {V:play} {sport} {~well|skillfully}",
        "{S:profession} {V:have} {a} {sent} {sport} {~game|match}",
        "{S:profession} {V:play} {sport} in {a} {color} {cloth} {~again|once more}",
    ),
    "outing": (
        "{S:animal} {V:walk} {~slowly|leisurely}",
        "{S:profession} {V:visit} {a} {~friend|relative}",
        "{S:profession} {V:have} {a} {sent} {~picnic|outing}",
        "{S:profession} {V:see} {num} {animal:pl} {~together|at once}",
    ),
    "pets": (
        "{S:animal} {V:play} with {a} {color} {~ball|toy}",
        "{S:animal} {V:be} {~very|really} {emotion} {place}",
        "{S:animal:color} {V:want} {num} {~fresh|tasty} {food:pl}",
        "{S:animal} {V:like} the {weather} weather {~a lot|very much}",
    ),
    "story": (
        "{S:profession} {V:tell} {a} {sent} {~story|tale} about {a} {animal}",
        "{S:profession} {V:recommend} {a} {~book|novel} about {sport}",
        "{S:profession} {V:write} {a} {~poem|song} about {a} {color} {cloth}",
        "{S:profession} {V:recommend} {a} {~book|novel} about {vehicle:pl}",
    ),
    "delivery": (
        "{S:profession} {V:deliver} {num} {food:pl} by {vehicle} {~as promised|as agreed}",
        "{S:profession} {V:carry} {a} {color} {~box|package}",
        "{S:profession} {V:load} the {vehicle} {~quickly|rapidly}",
        "{S:profession} {V:deliver} {a} {cloth} {~on foot|by hand}",
    ),
}

HELDOUT_FAMILIES = ("pets", "game_day", "story", "delivery")
"""Template families never used in the train split (a shift in sentence structure)."""

# Adjuncts wrapped around every frame that does not already hold their concepts:
# (name, prefix, suffix).
ADJUNCTS = (
    ("plain", "", ""),
    ("time-first", "{time}, ", ""),
    ("place", "", " {place}"),
    ("time", "", " {time}"),
    ("while-weather", "", " while it {BE_IT} {weather}"),
    ("weather-day", "", " on {a} {weather} day"),
    ("time-first-place", "{time}, ", " {place}"),
)
