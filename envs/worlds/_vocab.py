"""Vocabulary of the synthetic world: genres with their own words, and user demographics.

Each :class:`GenreVocab` carries enough words to write varied, natural titles and descriptions, so a sentence
encoder separates genres from the text alone. Lists are written as ``"a|b|c"`` strings to keep this file short.

Placeholders in templates: ``{adj}``, ``{noun}``, ``{noun2}`` (title words), ``{hero}``, ``{place}``, ``{thing}``
(plot phrases, lower case), ``{name}``, ``{name2}``, ``{surname}`` (people), ``{place_title}`` (a town name),
``{num}`` (a small number).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GENRES", "GenreVocab", "FIRST_NAMES", "SURNAMES", "GENDERS", "GENDER_PROBS", "OCCUPATIONS", "COUNTRIES",
    "HYPE_SENTENCES", "TOWNS",
]


def _split(s: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in s.split("|") if w.strip())


@dataclass(frozen=True)
class GenreVocab:
    """Words of one genre.

    Attributes:
        name: genre name as written in item texts (``"Genres: <name>"``).
        like_phrases: ways a user states a liking for the genre in a profile (the first is the genre name).
        titles: title templates. adjs, nouns: title words (Title Case).
        heroes, places, things: lower-case phrases with articles, for plots.
        plots: plot sentence templates. tones: noun phrases completing "A {tone}.".
        years: (first, last) release year.
        age_tilt: > 0 favoured by older users, < 0 by younger ones (scaled by the config's demographic strength).
    """

    name: str
    like_phrases: tuple[str, ...]
    titles: tuple[str, ...]
    adjs: tuple[str, ...]
    nouns: tuple[str, ...]
    heroes: tuple[str, ...]
    places: tuple[str, ...]
    things: tuple[str, ...]
    plots: tuple[str, ...]
    tones: tuple[str, ...]
    years: tuple[int, int]
    age_tilt: float


def _g(name: str, likes: str, titles: str, adjs: str, nouns: str, heroes: str, places: str, things: str,
       plots: str, tones: str, years: tuple[int, int], age_tilt: float) -> GenreVocab:
    return GenreVocab(name, (name, *_split(likes)), _split(titles), _split(adjs), _split(nouns), _split(heroes),
                      _split(places), _split(things), _split(plots), _split(tones), years, age_tilt)


GENRES: tuple[GenreVocab, ...] = (
    _g("science fiction", "space operas|stories about artificial intelligence|futuristic sci-fi",
       "The {adj} {noun}|{noun} {num}|Beyond the {noun}|{adj} {noun}|Children of the {noun}|The {noun} Protocol"
       "|Echoes of {noun}|{noun} Rising",
       "Silent|Last|Distant|Hollow|Quantum|Crimson|Infinite|Fractured|Synthetic|Orbital|Dark|Binary",
       "Orbit|Signal|Horizon|Nebula|Colony|Singularity|Android|Starfall|Eclipse|Reactor|Frontier|Void|Pulsar",
       "a stranded astronaut|a rogue android|the crew of a deep-space freighter|a young starship pilot"
       "|a disgraced xenobiologist|an artificial intelligence that wakes up|a colony engineer|a time-travelling physicist",
       "a mining colony on Europa|a generation ship drifting between stars|a terraformed Mars|an orbital station"
       "|a megacity ruled by algorithms|the edge of a black hole|a frozen exoplanet|a derelict space station",
       "an alien signal|a faster-than-light drive|a cloned memory|a rogue planet on a collision course"
       "|a quantum computer|a wormhole|an ancient alien artefact|a neural implant",
       "{hero} discovers {thing} near {place} and must decide whether humanity is ready for it"
       "|When {thing} threatens {place}, {hero} races against time to save the last survivors"
       "|On {place}, {hero} uncovers a conspiracy built around {thing}"
       "|{hero} is sent to {place} to investigate {thing} and finds the crew gone"
       "|Years after contact, {hero} tries to reverse the damage caused by {thing} on {place}",
       "cerebral space adventure|slow-burn sci-fi meditation on memory and identity|dazzling futuristic epic"
       "|tense interstellar survival story|thought-provoking tale of robots and consciousness",
       (1968, 2024), -0.2),
    _g("fantasy", "epic fantasy|stories with dragons and magic|sword and sorcery",
       "The {adj} {noun}|{noun} of the {noun2}|The {noun} King|Legend of the {adj} {noun}|Song of {noun}"
       "|The Last {noun}|Chronicles of {noun}",
       "Enchanted|Ancient|Shadowed|Golden|Cursed|Forgotten|Elven|Iron|Wyrd|Silver|Thorned",
       "Dragon|Crown|Sword|Throne|Sorcerer|Realm|Rune|Oracle|Citadel|Grimoire|Phoenix|Wyvern",
       "an orphaned stable boy|a reluctant sorceress|an exiled elven prince|a band of dwarven miners"
       "|a young knight|a half-giant blacksmith|a cursed queen|a wandering bard",
       "a kingdom under an eternal winter|the enchanted forest of Eldermoor|a floating citadel"
       "|the dragon-haunted mountains|a city of wizards|the underworld beneath the sea|a realm of fae",
       "a stolen dragon egg|an ancient prophecy|a cursed sword|a forbidden spellbook|the last unicorn"
       "|a crown that grants immortality|a sleeping dragon|a map to the lost realm",
       "{hero} sets out across {place} to recover {thing} before the dark lord awakens"
       "|Bound by {thing}, {hero} must unite rival clans of {place}"
       "|In {place}, {hero} learns magic to break the spell of {thing}"
       "|A quest for {thing} leads {hero} through {place} and into legend",
       "sweeping tale of magic and destiny|swashbuckling sword-and-sorcery adventure|enchanting fairy tale"
       "|dark fantasy epic of kingdoms at war|whimsical quest full of dragons and wizards",
       (1977, 2024), -0.3),
    _g("western", "cowboy westerns|frontier stories|gunslingers and outlaws",
       "{adj} {noun}|The {noun} at {place_title}|Gunfight at {place_title}|Ride the {adj} {noun}|A {noun} for {name}"
       "|The Ballad of {name} {surname}|{noun} Creek",
       "Dusty|Lonesome|Wild|Rawhide|Dead Man's|High|Red|Broken|Outlaw|Silver",
       "Saddle|Trail|Canyon|Sheriff|Gulch|Stallion|Frontier|Mesa|Ranch|Rustler|Stagecoach|Revolver",
       "a retired gunslinger|a tough frontier sheriff|a cattle rancher's widow|a bounty hunter|a young cowhand"
       "|an outlaw seeking redemption|a travelling preacher|a Pony Express rider",
       "a lawless mining town in Arizona|the Texas panhandle|a dusty border town|the Oregon Trail"
       "|a ranch in Wyoming|the Dakota badlands|a railroad camp in Nevada",
       "a stolen herd of cattle|a gold shipment|a price on his head|a land grab by the railroad|a range war"
       "|a wanted poster|a hidden silver mine",
       "{hero} rides into {place} to settle a score over {thing}|In {place}, {hero} stands alone against {thing}"
       "|{hero} must escort {thing} across {place} through outlaw country"
       "|When {thing} tears {place} apart, {hero} picks up the revolver one last time",
       "gritty frontier western|classic tale of cowboys and outlaws|sun-scorched revenge western"
       "|elegiac western about the end of the Old West|rugged horse opera",
       (1950, 2022), 0.8),
    _g("cooking", "cooking shows|recipes and home cooking|baking|food and cuisine",
       "{name}'s {adj} Kitchen|The {adj} Table|Cooking with {name}|{noun} & {noun2}|Simply {noun}"
       "|The {noun} Project|Sunday {noun}",
       "Rustic|Homemade|Italian|Spicy|Seasonal|Everyday|French|Comfort|Golden|Fresh|Smoky",
       "Bread|Pasta|Spice|Oven|Butter|Harvest|Dumpling|Feast|Bakery|Grill|Noodle|Pantry|Sourdough",
       "a celebrity chef|a pastry chef|a home cook|a grandmother with family recipes|a street-food vendor"
       "|a rival baker|a young sous-chef",
       "a farmhouse kitchen in Tuscany|a busy restaurant kitchen|night markets in Bangkok|a seaside bistro"
       "|a small bakery in Paris|a food truck|a mountain lodge",
       "slow-cooked ragù|sourdough bread|hand-made pasta|a perfect soufflé|weeknight dinners|spicy curries"
       "|seasonal vegetables|chocolate desserts|dumplings from scratch",
       "{hero} shares the secrets of {thing}, cooked step by step in {place}"
       "|From {place}, {hero} shows how to make {thing} with simple ingredients"
       "|{hero} travels to {place} to master {thing}|Each episode {hero} cooks {thing} and easy side dishes",
       "warm and practical cooking show|mouth-watering culinary series with easy recipes"
       "|cosy baking programme full of tips|competitive cooking series under the clock",
       (1995, 2024), 0.3),
    _g("true crime", "true crime documentaries|real murder cases|cold case investigations",
       "The {adj} Case of {name} {surname}|{noun}: The {name} {surname} Story|Murder in {place_title}"
       "|The {noun} Files|Anatomy of a {noun}|{adj} {noun}",
       "Unsolved|Missing|Deadly|Vanished|Wrongful|Silent|Cold|Twisted|Fatal",
       "Confession|Verdict|Alibi|Evidence|Trial|Killer|Witness|Homicide|Detective|Heist|Conviction",
       "investigative journalists|two retired homicide detectives|the victim's relatives|public defenders"
       "|forensic experts|true-crime podcasters|former FBI profilers",
       "a quiet suburb in Ohio|a small town in rural Australia|a Los Angeles courtroom|a prison in Louisiana"
       "|the streets of 1970s New York",
       "a decades-old murder|a wrongful conviction|a serial killer who was never caught|a missing teenager"
       "|a billion-dollar fraud|a botched police investigation|a disappearance",
       "{hero} reopen {thing} that shocked {place}|Interviews with {hero} reveal the truth behind {thing}"
       "|This documentary follows {hero} as they investigate {thing} in {place}"
       "|Using archive footage, {hero} reconstruct {thing}",
       "chilling true-crime documentary|gripping real-life investigation|docuseries based on real court records"
       "|haunting portrait of a real murder case",
       (2000, 2024), 0.1),
    _g("romance", "romantic comedies|love stories|romance dramas",
       "{adj} Hearts|Love in {place_title}|The {noun} Between Us|A {adj} {noun}|{name} & {name2}"
       "|Falling for {name}|Summer {noun}|Letters to {name}",
       "Sweet|Tender|Second|Summer|Secret|Endless|Stolen|Unexpected|Forever",
       "Kiss|Promise|Letter|Wedding|Heart|Proposal|Dance|Romance|Valentine|Sunset|Affair",
       "a heartbroken florist and her ex|two childhood sweethearts|a widowed architect and a chef"
       "|a bride-to-be and her best man|a small-town bookseller and a city lawyer|a famous actor and a waitress"
       "|two rival wedding planners",
       "a vineyard in Provence|a snowy village at Christmas|a beach town in Maine|a café in Paris"
       "|a bookshop in London|a summer camp",
       "a second chance at love|a fake engagement|an old love letter|a wedding that goes wrong"
       "|a holiday romance|a secret admirer",
       "{hero} find {thing} in {place}|In {place}, {hero} stumble into {thing}"
       "|A chance meeting in {place} leads {hero} to {thing}|{hero} return to {place} and confront {thing}",
       "heartwarming romantic comedy|swoon-worthy love story|bittersweet romantic drama"
       "|feel-good romance full of chemistry",
       (1985, 2024), 0.0),
    _g("horror", "horror movies|ghost stories|slasher films|supernatural scares",
       "The {adj} {noun}|{noun}|Don't Open the {noun}|Night of the {noun}|The {noun} Beneath|It Came from the {noun}"
       "|{adj} House",
       "Haunted|Bloody|Hollow|Possessed|Wicked|Sinister|Rotting|Midnight|Unholy|Grim",
       "Cellar|Ritual|Curse|Asylum|Doll|Witch|Crypt|Demon|Host|Séance|Hunger|Mirror",
       "newlyweds|college friends on a road trip|a grieving mother and her son|paranormal investigators"
       "|night-shift nurses|two teenage sisters|a priest and a young exorcist",
       "an abandoned asylum|a haunted farmhouse|a cabin in the woods|a cursed village|an old Victorian mansion"
       "|a hospital after dark",
       "a demonic presence|a cursed videotape|a masked killer|a ghost that wants revenge|a creature in the basement"
       "|a possessed doll|an occult ritual",
       "{hero} move into {place} and awaken {thing}|Trapped in {place}, {hero} are hunted by {thing}"
       "|{hero} must survive the night in {place} as {thing} closes in"
       "|After a séance in {place}, {hero} unleash {thing}",
       "terrifying supernatural horror|blood-soaked slasher|creepy haunted-house chiller"
       "|nerve-shredding horror film with jump scares|atmospheric folk horror",
       (1960, 2024), -0.5),
    _g("nature documentary", "wildlife documentaries|nature films|animals and the natural world",
       "{adj} Planet|Kingdom of the {noun}|The {adj} {noun}|Life in the {noun}|Secrets of the {noun}"
       "|{noun}: A Year in the Wild|Wild {noun}",
       "Blue|Frozen|Wild|Hidden|Living|Untamed|Green|Ancient|Great",
       "Ocean|Savanna|Rainforest|Reef|Tundra|Wetlands|Migration|Predators|Glacier|Canopy|Desert",
       "a family of snow leopards|humpback whales|a pride of lions|migrating wildebeest|coral reef fish"
       "|emperor penguins|mountain gorillas|monarch butterflies",
       "the Serengeti|the Great Barrier Reef|the Amazon rainforest|Antarctica|the Himalayas|the Okavango Delta"
       "|the Arctic tundra",
       "the changing seasons|climate change|the struggle to survive|a great migration|the search for food"
       "|the first year of life",
       "Filmed over three years, this documentary follows {hero} across {place} through {thing}"
       "|Stunning footage reveals how {hero} survive {thing} in {place}"
       "|A journey into {place} to film {hero} and {thing}",
       "breathtaking wildlife documentary|stunning natural-history series narrated with wonder"
       "|intimate portrait of animals in the wild|visually spectacular nature film",
       (1990, 2024), 0.5),
    _g("sports", "sports|football|basketball and sports dramas|athletes and competition",
       "The {adj} {noun}|{noun} Day|Road to the {noun}|{name} {surname}: {noun}|Full {noun}|Against the {noun}",
       "Final|Perfect|Underdog|Golden|Winning|Last|Championship|Inside",
       "Season|Game|Playoffs|Cup|Comeback|Pitch|Victory|Rivalry|Marathon|Knockout|Draft|Finals",
       "an underdog high-school football team|a fading boxing champion|a rookie quarterback|a women's football club"
       "|a marathon runner|a basketball coach|a Formula One team|a young tennis prodigy",
       "a small mining town|the World Cup|the NBA playoffs|the Olympic Games|a boxing gym in Philadelphia"
       "|the Tour de France",
       "a final season|a career-ending injury|a championship title|a historic comeback|a fierce rivalry"
       "|the pressure of the big game",
       "The story of {hero} and the fight for {thing} at {place}|Cameras follow {hero} through {thing} at {place}"
       "|Against all odds, {hero} must chase {thing}|{hero} must overcome {thing} before {place}",
       "inspiring sports drama|behind-the-scenes sports documentary|rousing underdog story"
       "|adrenaline-fuelled look at elite athletes",
       (1976, 2024), 0.0),
    _g("kids animation", "animated movies for kids|cartoons|family animation",
       "{adj} {noun}|The {adj} Adventures of {name}|{name} and the {noun}|Little {noun}|{noun} Pals"
       "|The {noun} Who Could Fly",
       "Happy|Silly|Tiny|Brave|Magic|Jolly|Bouncy|Sparkly|Cuddly|Super",
       "Bunny|Puppy|Dragon|Robot|Bear|Train|Penguin|Unicorn|Monster|Kitten|Dinosaur|Balloon",
       "a curious little bunny|a brave puppy|a robot who loves to dance|a talking teddy bear"
       "|a shy young dragon|a clumsy penguin|a kind little fox",
       "a colourful toy town|a magical treehouse|the land of candy|a busy farmyard|a bubbly underwater world"
       "|a playground",
       "a lost balloon|a birthday surprise|a rainbow that has lost its colours|a new friend|a big adventure"
       "|a treasure hunt",
       "{hero} goes on {thing} in {place}|In {place}, {hero} learns about friendship while looking for {thing}"
       "|{hero} and friends solve {thing} in {place}|Songs, games and {thing} with {hero} in {place}",
       "colourful animated adventure for young children|funny cartoon for the whole family"
       "|gentle animated series for preschoolers|sing-along animated musical for kids",
       (1990, 2024), -0.4),
    _g("war history", "war films|military history|World War II documentaries|history",
       "The {adj} {noun}|{noun} of {place_title}|Operation {noun}|Battle for {place_title}|The {noun}'s War"
       "|Hell's {noun}|{adj} Front",
       "Longest|Bloody|Iron|Last|Forgotten|Eastern|Western|Silent|Fallen",
       "Battalion|Offensive|Trench|Regiment|Siege|Armistice|Frontline|Empire|Invasion|Conquest|Resistance|Dynasty",
       "a platoon of young soldiers|a resistance fighter|a bomber crew|a battlefield nurse|a general"
       "|a codebreaker|a tank commander",
       "the beaches of Normandy|the trenches of the Somme|Stalingrad|the Pacific islands|occupied Paris"
       "|ancient Rome|the Napoleonic battlefields",
       "a doomed offensive|the last days of the war|a secret mission behind enemy lines|the fall of an empire"
       "|a famous siege|a decisive battle",
       "{hero} must fight through {place} during {thing}|In {place}, {hero} must survive {thing}"
       "|Historians retrace {thing} at {place} using letters and archive film"
       "|The story of {hero} sent to {place} on {thing}",
       "harrowing war drama|epic historical war film|authoritative military-history documentary"
       "|brutal, realistic portrayal of combat",
       (1956, 2024), 0.9),
    _g("comedy", "comedies|stand-up comedy|sitcoms|funny movies",
       "{adj} {noun}|The {noun} Guys|{name} Gets a {noun}|Meet the {noun}s|{noun} Party|Totally {adj}"
       "|My {adj} {noun}",
       "Crazy|Awkward|Big|Ridiculous|Bad|Hopeless|Lucky|Clueless|Dumb",
       "Roommate|Weekend|Vacation|Boss|Wedding|Neighbour|Intern|Road Trip|Reunion|Bachelor|Office",
       "two hapless friends|clumsy office workers|three stand-up comedians|slacker roommates"
       "|overconfident interns|two bumbling cops|a bride and her chaotic bridesmaids",
       "a chaotic office|Las Vegas|a disastrous family holiday|a high-school reunion|a suburban cul-de-sac",
       "a series of hilarious misunderstandings|a bet gone wrong|a wild weekend|an embarrassing secret"
       "|a disastrous wedding",
       "{hero} stumble through {thing} in {place}|In {place}, {hero} cause {thing}"
       "|{hero} must survive {thing} without anyone noticing|Laughs pile up as {hero} face {thing} in {place}",
       "laugh-out-loud comedy|silly slapstick romp|sharp and witty sitcom|irreverent buddy comedy"
       "|hilarious stand-up special",
       (1980, 2024), -0.1),
    _g("thriller", "thrillers|spy thrillers|action thrillers|suspense",
       "The {adj} {noun}|{noun} Point|Code {noun}|{noun} Protocol|The {noun} Agenda|Zero {noun}|{adj} Target",
       "Silent|Deadly|Hidden|Rogue|Black|Double|Final|Covert|Ghost",
       "Agent|Conspiracy|Hostage|Target|Assassin|Cipher|Extraction|Deception|Safehouse|Dossier|Betrayal",
       "a rogue CIA agent|a former special-forces operative|a hacker on the run|a journalist|a bodyguard"
       "|a double agent|a desperate father",
       "Berlin|the streets of Istanbul|a high-security prison|a skyscraper in Hong Kong|a moving train"
       "|Washington D.C.",
       "a stolen nuclear code|a government conspiracy|a ticking bomb|a kidnapping|an assassination plot"
       "|a mole inside the agency",
       "{hero} has 24 hours to stop {thing} in {place}|Framed for murder, {hero} uncovers {thing}"
       "|In {place}, {hero} is caught in {thing}|A cat-and-mouse chase through {place} pits {hero} against {thing}",
       "pulse-pounding action thriller|taut espionage thriller full of twists|edge-of-your-seat suspense"
       "|relentless conspiracy thriller",
       (1975, 2024), 0.2),
    _g("music", "music documentaries|concert films|rock music|musicals",
       "{adj} {noun}|The {noun} Sessions|{name} {surname}: Live at {place_title}|Sound of the {noun}"
       "|{noun} on Vinyl|The {adj} Tour",
       "Electric|Acoustic|Soulful|Loud|Unplugged|Funky|Jazz|Blue|Rebel",
       "Melody|Guitar|Rhythm|Encore|Anthem|Symphony|Chorus|Backstage|Soul|Records|Ballad|Groove",
       "a legendary rock band|a jazz pianist|a young rapper|a punk band|an orchestra|a soul singer"
       "|a folk duo|a pop star",
       "a sold-out stadium|a smoky jazz club in Harlem|a recording studio in Memphis|Glastonbury"
       "|a garage in Seattle|the streets of Detroit",
       "their last concert|the making of a classic album|a world tour|a comeback|their breakthrough hit"
       "|the songs that defined a generation",
       "Rare footage captures {hero} performing {thing} live at {place}"
       "|The story of how {hero} recorded {thing} at {place}"
       "|From {place} to the charts: {hero} and {thing}|Backstage with {hero} during {thing}",
       "electrifying concert film|soulful music documentary|rockumentary packed with classic songs"
       "|toe-tapping musical",
       (1965, 2024), 0.1),
    _g("travel", "travel shows|exploring new countries|adventure travel",
       "{adj} {noun}|Around the World in {num} Days|{noun} Diaries|The {adj} Road|Passport to {noun}"
       "|Wanderlust: {noun}|Off the {adj} Path",
       "Hidden|Coastal|Grand|Lost|Wandering|Far|Island|Slow|Beaten",
       "Journeys|Roads|Islands|Horizons|Voyage|Passage|Trails|Cities|Postcards|Expedition|Rail",
       "a travel journalist|a backpacker|a celebrity host|a family in a camper van|a lone motorcyclist"
       "|a food-loving explorer",
       "Japan|Patagonia|the Greek islands|Morocco|Iceland|the Silk Road|Vietnam|the Scottish Highlands|Peru",
       "local markets|ancient temples|hidden beaches|mountain villages|the best street food|slow train journeys"
       "|festivals",
       "{hero} explores {place}, discovering {thing} along the way"
       "|From coast to coast, {hero} travels across {place} in search of {thing}"
       "|{hero} takes the slow road through {place} to find {thing}",
       "beautifully shot travel series|relaxing travelogue|adventurous travel documentary"
       "|inspiring guide to hidden corners of the world",
       (1995, 2024), 0.4),
    _g("technology", "technology|gadgets and computers|science and tech explainers|startups",
       "The {adj} {noun}|{noun} Revolution|Inside the {noun}|{noun}.exe|Code & {noun}|Rise of the {noun}"
       "|The {noun} Economy",
       "Digital|Smart|Open|Connected|Next|Silicon|Virtual|Algorithmic|Hidden",
       "Machine|Network|Startup|Chip|Algorithm|Cloud|Code|Robot|Internet|Data|Software|Blockchain",
       "engineers at a Silicon Valley startup|computer scientists|young programmers|tech journalists"
       "|the inventors of the smartphone|open-source developers",
       "Silicon Valley|a chip factory in Taiwan|a robotics lab|a hackathon|a server farm|Shenzhen",
       "machine learning|the birth of the internet|self-driving cars|cybersecurity|quantum computing"
       "|social media algorithms|the next generation of chips",
       "{hero} explain how {thing} is changing everyday life|Inside {place}, {hero} race to build {thing}"
       "|A look at {thing}, told by {hero} in {place}|{hero} test the latest gadgets and explain {thing}",
       "accessible tech explainer|eye-opening documentary about the digital world|gadget review show"
       "|fascinating look at how computers work",
       (1998, 2024), -0.2),
    _g("personal finance", "personal finance|investing|money advice|economics",
       "{adj} Money|The {noun} Plan|{noun} Matters|Money {noun}|The {adj} Investor|Get {adj}|Wall Street {noun}",
       "Smart|Rich|Frugal|Wealthy|Debt-Free|Savvy|Intelligent|Early",
       "Budget|Portfolio|Savings|Market|Retirement|Dividend|Mortgage|Crash|Fortune|Wealth|Pension|Index Fund",
       "a financial advisor|a former Wall Street trader|a Nobel-winning economist|a consumer journalist"
       "|a debt counsellor|a self-made millionaire",
       "Wall Street|the kitchen table|the stock exchange|a bank in crisis|a small business",
       "saving for retirement|paying off student loans|index-fund investing|the 2008 financial crash"
       "|buying a first home|building a monthly budget|inflation",
       "{hero} explains {thing} in plain language|Each episode, {hero} helps a family with {thing}"
       "|{hero} reveals what really happened on {place} during {thing}|A practical guide to {thing} with {hero}",
       "practical money-advice show|clear-eyed guide to investing|cautionary documentary about money and markets"
       "|no-nonsense personal finance series",
       (2000, 2024), 0.5),
    _g("fitness", "fitness|workouts|yoga|health and exercise",
       "{adj} {noun}|{num}-Minute {noun}|{noun} with {name}|The {noun} Challenge|Total {noun}|Power {noun}",
       "Strong|Fit|Daily|Core|Lean|Active|Mindful|Intense|Gentle",
       "Workout|Yoga|Pilates|Cardio|Stretch|Strength|Bootcamp|HIIT|Run|Burn|Flow|Abs",
       "a personal trainer|a yoga teacher|an Olympic athlete|a nutritionist|a beginner-friendly coach|a running coach",
       "a sunny living room|a beach at sunrise|a busy gym|a mountain meadow|a bright studio",
       "full-body workouts|morning yoga routines|interval training|healthy eating|marathon training|core strength"
       "|flexibility and mobility",
       "{hero} guides you through {thing} you can do at home|{hero} shares {thing} from {place}"
       "|A 30-day programme of {thing} led by {hero}|{hero} helps beginners build {thing}",
       "energising workout programme|calming yoga and stretching series|no-equipment home fitness class"
       "|motivating training challenge",
       (2005, 2024), 0.0),
    _g("anime", "anime|Japanese animation|shonen anime|manga adaptations",
       "{noun} no {noun2}|{adj} {noun}|{noun} Academy|Sword of the {noun}|My {noun} Is a {noun2}|{noun} Chronicles",
       "Spirit|Mecha|Neon|Shinobi|Demon|Sakura|Shadow|Blade|Ghost",
       "Kaiju|Shogun|Samurai|Ninja|Sensei|Titan|Spirit|Mecha|Yokai|Hero|Idol|Ronin",
       "a high-school student with hidden powers|a young ninja|a mecha pilot|a girl who can see spirits"
       "|a wandering samurai|a team of magical girls|a boy who wants to be the strongest hero",
       "a neon Tokyo of the future|a school for heroes|a village of ninjas|a world overrun by titans"
       "|the spirit realm|feudal Japan",
       "a demon's curse|a tournament of champions|a giant robot|a power awakening|a forbidden jutsu"
       "|a rival academy",
       "{hero} enters {thing} in {place}|In {place}, {hero} fights {thing} with friends and rivals"
       "|{hero} awakens {thing} and must protect {place}|{hero} trains hard in {place} to master {thing}",
       "action-packed shonen anime|emotional slice-of-life anime|stylish mecha anime series"
       "|beautifully animated Japanese fantasy",
       (1988, 2024), -0.7),
    _g("mystery", "mysteries|detective stories|whodunits|cozy mysteries",
       "The {adj} {noun}|Murder at {place_title}|The {noun} Mystery|Inspector {surname}|The Case of the {adj} {noun}"
       "|Death in {place_title}|{noun} Lane",
       "Missing|Vanishing|Poisoned|Crooked|Secret|Locked|Hidden|Curious",
       "Key|Clue|Manor|Inheritance|Locket|Will|Letter|Portrait|Riddle|Suspect|Diary",
       "a brilliant amateur sleuth|a village detective|an elderly crime novelist|a private investigator"
       "|a retired inspector|a curious librarian",
       "an English country house|a sleepy seaside village|a luxury train|a snowbound hotel|a college in Oxford",
       "a locked-room murder|a missing heiress|a poisoned dinner guest|a stolen painting|a family secret"
       "|an anonymous letter",
       "{hero} must solve {thing} at {place} before the killer strikes again"
       "|When {thing} shakes {place}, {hero} questions every suspect"
       "|{hero} unravels {thing} hidden in {place}|Clue by clue, {hero} investigates {thing}",
       "classic whodunit|cosy village mystery|clever detective story full of red herrings"
       "|atmospheric murder mystery",
       (1960, 2024), 0.6),
    _g("home renovation", "home renovation|DIY and home improvement|interior design|gardening",
       "{adj} {noun}|The {noun} Rescue|Fixer {noun}|{noun} Makeover|Dream {noun}|{name}'s {adj} {noun}",
       "Cozy|Rustic|Modern|Tiny|Grand|Open-Plan|Vintage|Country",
       "Home|House|Cottage|Kitchen|Loft|Garden|Barn|Bungalow|Attic|Backyard|Workshop",
       "renovation twins|two carpenters|garden designers|first-time home buyers"
       "|interior designers|DIY enthusiasts|a couple of builders",
       "a crumbling Victorian house|a tiny city flat|a farmhouse in Vermont|a suburban backyard|an old barn",
       "a full kitchen remodel|a garden makeover|a budget renovation|storage ideas|a loft conversion"
       "|restoring original floors",
       "{hero} transform {place} with {thing}|Each episode, {hero} tackle {thing} in {place}"
       "|{hero} turn {place} into a dream home with {thing}|Step-by-step, {hero} show {thing}",
       "satisfying home makeover show|practical DIY series|inspiring design programme|relaxing gardening show",
       (2000, 2024), 0.6),
    _g("medical drama", "medical dramas|hospital shows|doctors and nurses",
       "{adj} {noun}|The {noun}|Code {noun}|{place_title} General|Critical {noun}|The {noun} Shift",
       "Emergency|Critical|Night|Trauma|Vital|Fatal|Second",
       "Surgeon|Ward|Pulse|Diagnosis|Resident|ER|Transplant|Shift|Intensive Care|Operating Room",
       "first-year surgical residents|a brilliant diagnostician and her team|emergency-room nurses"
       "|paediatric surgeons|paramedics on the night shift",
       "a busy Chicago hospital|an understaffed ER|a military field hospital|a rural clinic|an intensive care unit",
       "an impossible diagnosis|a mass-casualty emergency|a risky transplant|a medical mistake|a pandemic",
       "{hero} fight to save lives in {place} while facing {thing}|In {place}, {hero} must make a call on {thing}"
       "|{hero} juggle personal lives and {thing} at {place}",
       "intense hospital drama|emotional medical series|fast-paced emergency-room drama",
       (1990, 2024), 0.3),
    _g("reality competition", "reality TV|talent shows|competition shows",
       "{adj} {noun}|The {noun}|{noun} Island|{noun} Wars|Last {noun} Standing|The {adj} {noun} Show",
       "Ultimate|Big|Celebrity|Survivor|Great|Next|Top",
       "Challenge|Contest|Island|Idol|Showdown|Talent|Race|Villa|Bake-Off|Elimination",
       "sixteen strangers|hopeful singers|aspiring designers|celebrity contestants|teams of couples",
       "a desert island|a luxury villa|a television studio|a race around the world|a house full of cameras",
       "weekly eliminations|a cash prize|public votes|secret alliances|impossible challenges",
       "{hero} compete in {place} for {thing}|{hero} face {thing} in {place}, and one goes home each week"
       "|Drama erupts as {hero} navigate {thing} in {place}",
       "addictive reality competition|glossy talent show|dramatic reality series full of twists",
       (2000, 2024), -0.3),
    _g("art and design", "art|painting and design|architecture|museums",
       "{adj} {noun}|The {noun} of {name} {surname}|Portrait of a {noun}|{noun} in Colour|The {adj} Canvas",
       "Abstract|Impressionist|Modern|Bold|Renaissance|Radiant|Minimal",
       "Brush|Canvas|Sculpture|Museum|Studio|Palette|Gallery|Architect|Masterpiece|Fresco",
       "a famous painter|art historians|a young architect|a street artist|a sculptor|museum curators",
       "Renaissance Florence|a studio in Montmartre|the Louvre|a gallery in New York|a Bauhaus school",
       "a lost masterpiece|the birth of modern art|a radical new style|colour and light|a forgery scandal",
       "A journey with {hero} tracing {thing} from {place} to the present|Inside {place}, a look at {thing} with {hero}"
       "|The story of {thing}, shaped in {place} and told by {hero}",
       "visually rich art documentary|elegant design series|insightful portrait of an artist",
       (1980, 2024), 0.7),
)

FIRST_NAMES = _split("Ada|Ben|Clara|Diego|Elena|Farid|Grace|Hugo|Ines|Jack|Kira|Leo|Maya|Nico|Olivia|Priya|Quinn"
                     "|Rosa|Sam|Tess|Umar|Vera|Will|Yuki|Zoe|Amara|Bruno|Chloe|Dev|Emil")
SURNAMES = _split("Walker|Moreau|Tanaka|Okafor|Silva|Novak|Reyes|Hart|Lindqvist|Kowalski|Brennan|Costa|Mendes"
                  "|Ishikawa|Fischer|Rossi|Doyle|Nakamura|Haddad|Bauer")
GENDERS = ("female", "male", "non-binary")
GENDER_PROBS = (0.49, 0.49, 0.02)
OCCUPATIONS = _split("student|software engineer|teacher|nurse|accountant|artist|retired|lawyer|chef|farmer"
                     "|salesperson|doctor|electrician|writer|marketing manager|scientist|homemaker|mechanic"
                     "|designer|civil servant|entrepreneur|musician|pharmacist|truck driver|unemployed")
COUNTRIES = _split("United States|United Kingdom|Canada|Germany|France|Spain|Italy|Brazil|Mexico|India|Japan"
                   "|South Korea|Australia|Nigeria|South Africa|Sweden|Poland|Netherlands|Argentina|Egypt")
HYPE_SENTENCES = _split("You won't believe what happens next!|The most shocking twist of the year!"
                        "|Everyone is talking about it!|Number one must-see, guaranteed!|Jaw-dropping from the first minute!")
TOWNS = _split("Blackwood|Dry Creek|Eldridge|Harrow Hill|Maple Falls|Ravenscar|Stillwater|Thornbury|Willow Bend"
                "|Ashford|Redrock|Kingsbridge|Silver Lake|Oakhaven|Riverside|Fairhaven")
