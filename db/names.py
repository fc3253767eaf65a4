"""Two-word run names like Prefect's ("ambrosial-coot")."""

import random

ADJECTIVES = """able agile amber ambrosial ancient arctic ardent auburn azure bold brave brisk bronze
calm candid cerulean charming cheerful clever cobalt copper cosmic crimson curious daring dapper
denim devout dynamic eager earnest electric emerald energetic fancy fearless festive fiery flawless
fluffy friendly gentle gifted glorious golden graceful grinning hallowed handsome happy hardy hasty
helpful hilarious honest hopeful humble icy imaginary impartial indigo infallible invaluable jade
jolly jovial keen khaki kind lavender lilac lively lovely loyal lucky magenta majestic mauve merry
meteoric mighty misty modest natural neon nimble noble nostalgic novel olive onyx opal optimistic
orange organic outstanding pastel patient peach pearl placid polite precious prompt proud purple
quick quiet quirky radiant rapid rational realistic red resilient resourceful robust rose ruby rugged
russet sage sandy sapphire scarlet sensible serious shiny silver sincere smart snobbish sociable
sparkling spectacular speedy spiffy splendid steady stirring strong successful sunny super tactful
tan teal terrific thankful tidy tireless tomato tough tranquil turquoise ultramarine uncovered
unique upbeat valiant vehement vermilion versatile vigilant violet vivacious warm wealthy whimsical
wise witty wonderful xanthic yellow zealous zippy""".split()

ANIMALS = """aardvark albatross alligator alpaca angelfish ant anteater antelope armadillo auk axolotl
baboon badger barracuda bat bear beaver bee beetle bison boa bobcat bonobo buffalo bulldog bullfrog
butterfly buzzard camel capybara caracal cardinal caribou cassowary cat caterpillar catfish chameleon
chamois cheetah chicken chihuahua chimpanzee chinchilla chipmunk cicada clam cobra cockatoo coot
cormorant cougar cow coyote crab crane cricket crocodile crow cuckoo curassow deer dingo dodo dog
dolphin donkey dormouse dove dragon dragonfly duck eagle eel egret elephant elk emu ermine falcon
ferret finch firefly flamingo fox frog gazelle gecko gerbil gibbon giraffe gnu goat goldfish goose
gopher gorilla grasshopper grouse guppy hare harrier hawk hedgehog heron hippo hoatzin hornet horse
hound hummingbird hyena ibex ibis iguana impala jackal jaguar jellyfish kangaroo kingfisher kiwi
koala kudu ladybug lemming lemur leopard lion lizard llama lobster lynx macaw magpie mallard mammoth
manatee mandrill mantis marmot marten meerkat mink mole mongoose monkey moose mosquito moth mouse
mule narwhal newt nightingale ocelot octopus okapi opossum orca oriole ostrich otter owl ox oyster
panda panther parakeet parrot partridge peacock pelican penguin pheasant pig pigeon piranha platypus
poodle porcupine porpoise potoo puffin puma python quail quetzal rabbit raccoon ram rat raven
reindeer rhino roadrunner robin rooster salamander salmon sandpiper sardine scorpion seahorse seal
shark sheep shrew shrimp skink skunk sloth slug snail snake sparrow spider squid squirrel starfish
stingray stork swallow swan tapir tarantula tarsier termite tern tiger toad tortoise toucan trout
tuatara turkey turtle uakari unicorn urchin vicuna viper vole vulture wallaby walrus warthog wasp
weasel whale wildebeest wolf wolverine wombat woodpecker worm wren yak zebra""".split()


def generate_name() -> str:
    return f"{random.choice(ADJECTIVES)}-{random.choice(ANIMALS)}"
