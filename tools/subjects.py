"""Which words name a subject of a picture: a creature, a person, a vehicle or a standalone object.

enhance_prompt may describe the idea's own subject and its scene (style, light, composition, materials, parts),
never add another subject: "a red kite over a green hill" must not gain "a golden eagle soaring", which the
picture model would draw. This lexicon is how that is checked where the additions are chosen (tools/enhance.py)
and measured (benchmarks/enhance_rubric.py). No installed package has noun categories (no WordNet here), so the
lists are kept by hand: common nouns a picture could be *of*. Scenery (sky, hill, forest, sunrise), light,
materials, plants, clothing (worn by a subject: "a knitted cap") and parts of things (scales, sails, string) are
not subjects here: they describe the subject or its scene.
"""
from __future__ import annotations

import re

CREATURES = """
animal animals beast creature critter monster pet wildlife
ant bee beetle butterfly moth caterpillar dragonfly firefly grasshopper ladybug mosquito spider scorpion wasp hornet cricket snail slug worm
bird eagle hawk falcon owl raven crow sparrow robin parrot pigeon dove swan duck goose gull seagull pelican heron crane flamingo stork
peacock penguin hummingbird kingfisher vulture woodpecker rooster hen chicken turkey ostrich magpie finch swallow albatross puffin
fish shark whale dolphin octopus squid jellyfish crab lobster shrimp seahorse starfish eel salmon trout koi goldfish stingray ray orca seal walrus otter
cat kitten dog puppy wolf fox bear cub lion lioness tiger leopard jaguar cheetah panther lynx cougar horse pony foal donkey mule zebra
cow bull calf ox buffalo bison sheep lamb ram goat pig boar deer stag doe fawn elk moose reindeer antelope gazelle giraffe camel llama
alpaca elephant rhino rhinoceros hippo hippopotamus monkey ape gorilla chimpanzee orangutan lemur sloth koala kangaroo panda raccoon
squirrel chipmunk rabbit bunny hare mouse rat hamster hedgehog porcupine badger beaver skunk mole bat frog toad newt salamander lizard
gecko iguana chameleon snake serpent python cobra viper turtle tortoise crocodile alligator dinosaur
dragon wyvern drake unicorn pegasus griffin gryphon phoenix hydra kraken leviathan basilisk chimera minotaur centaur mermaid merman
fairy faerie pixie sprite elf dwarf gnome goblin troll ogre orc giant titan golem ghost spirit phantom specter wraith zombie vampire
werewolf demon devil imp angel cherub yeti sasquatch robot android cyborg automaton mech alien
"""
PEOPLE = """
person people human humans figure figures character man men woman women boy girl child children kid kids baby toddler teenager
lady gentleman maiden lad lass elder family couple crowd stranger passerby pedestrian traveler traveller wanderer pilgrim hiker climber
rider horseman explorer adventurer tourist
mother father mom dad parent grandmother grandfather grandma grandpa granddaughter grandson daughter son sister brother twins bride groom
king queen prince princess emperor empress lord duke knight squire warrior soldier guard archer samurai ninja viking gladiator
wizard witch sorcerer sorceress mage warlock druid shaman monk nun priest priestess pope oracle prophet
pirate sailor captain fisherman fisherwoman farmer shepherd hunter woodcutter lumberjack blacksmith miner merchant vendor baker chef cook
butcher tailor weaver potter carpenter mason gardener
dancer ballerina musician singer guitarist violinist pianist drummer artist painter sculptor poet writer actor clown jester juggler acrobat
astronaut cosmonaut pilot driver doctor nurse scientist professor teacher student scholar detective policeman firefighter cowboy cowgirl
"""
VEHICLES = """
vehicle vehicles car cars automobile truck lorry bus van jeep taxi cab limousine tram streetcar train locomotive subway
bicycle bike tricycle motorcycle motorbike scooter moped skateboard
boat ship sailboat sailship yacht canoe kayak raft gondola ferry barge tugboat steamboat steamship galleon longship junk dinghy
submarine airplane aeroplane aircraft airliner jet helicopter glider airship zeppelin blimp rocket spaceship spacecraft starship
shuttle ufo carriage stagecoach wagon cart chariot sled sledge sleigh tractor bulldozer excavator tank drone
"""
OBJECTS = """
object objects sword swords dagger knife axe spear shield helmet armor armour crown tiara scepter sceptre throne
lantern lamp candle candles chandelier torch
book books scroll letter envelope map globe compass telescope microscope hourglass clock watch pocketwatch
key keys coin coins trophy medal ring necklace bracelet amulet pendant locket jewel
cup mug teacup teapot kettle vase jar bottle jug pitcher bowl plate goblet chalice
basket chest suitcase backpack bag purse wallet umbrella parasol
guitar violin cello piano harp flute trumpet saxophone drum drums accordion banjo lute
chair armchair stool bench sofa couch bed table desk cabinet bookshelf wardrobe mirror
doll dolls teddy toy toys puppet marionette kite balloon balloons ball
phone telephone camera radio television computer laptop typewriter gramophone record records
flag statue figurine skull anchor bell cage tent ladder wheelbarrow
pumpkin apple
"""
CATEGORIES = {"creature": CREATURES, "person": PEOPLE, "vehicle": VEHICLES, "object": OBJECTS}
LEXICON: dict[str, str] = {word: category for category, words in CATEGORIES.items() for word in words.split()}
# A general word for the kind of thing, which refers to the idea's own subject when the idea has one of that kind
# ("the creature's wings" for a dragon, "the vehicle's chrome" for a motorcycle).
GENERAL = {"animal", "animals", "beast", "creature", "critter", "wildlife", "figure", "figures", "character", "person", "people", "vehicle",
           "vehicles", "object", "objects"}
IRREGULAR = {"men": "man", "women": "woman", "children": "child", "people": "person", "geese": "goose", "mice": "mouse",
             "wolves": "wolf", "knives": "knife", "calves": "calf", "elves": "elf", "dwarves": "dwarf", "teeth": "tooth",
             "oxen": "ox", "fishermen": "fisherman", "horsemen": "horseman", "policemen": "policeman", "mermen": "merman"}
# Terms of the trade that contain a subject's name but describe light or a view, not a thing in the picture.
TERMS = re.compile(r"\b(?:bird'?s[- ]eye|worm'?s[- ]eye|fish[- ]?eye|butterfly lighting|ring light|key light|cat[- ]?walk|"
                   r"dog[- ]eared|crow'?s[- ]feet|horse ?power|fairy[- ]?tales?|fairy[- ]?lights?|fairy[- ]?lit)\b", re.I)


def lemma(word: str) -> str:
    """The lexicon's form of a word: lower case, singular ("wolves" -> "wolf", "kites" -> "kite")."""
    word = word.lower().strip("'").removesuffix("'s").removesuffix("s'")
    if word in IRREGULAR:
        return IRREGULAR[word]
    if word in LEXICON:
        return word
    for cut, add in (("ies", "y"), ("ves", "f"), ("ves", "fe"), ("es", ""), ("s", "")):
        if word.endswith(cut) and (candidate := word[: -len(cut)] + add) in LEXICON:
            return candidate
    return word


def subjects_in(text: str) -> dict[str, str]:
    """The subject words of a text, by lemma: {"eagle": "creature", ...}."""
    text = TERMS.sub(" ", text or "")
    found = {}
    for word in re.findall(r"[a-z][a-z'-]*", text.lower()):
        base = lemma(word)
        if base in LEXICON:
            found[base] = LEXICON[base]
    return found


def new_subjects(idea: str, addition: str) -> list[str]:
    """The subjects an addition names that the idea does not have (a general word like "creature" counts as the
    idea's own when the idea has a subject of that kind)."""
    have = subjects_in(idea)
    kinds = set(have.values())
    return [word for word, kind in subjects_in(addition).items()
            if word not in have and not (word in GENERAL and kind in kinds)]
