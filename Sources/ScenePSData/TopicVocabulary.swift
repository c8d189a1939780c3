/// Real English words per topic, for synthetic item titles: items of one
/// topic share words, so title similarity follows topic similarity.
enum TopicVocabulary {
    static let topics: [(name: String, words: [String])] = [
        ("cooking", ["recipe", "kitchen", "pasta", "bake", "spice", "oven", "sauce", "chef", "garlic", "bread", "soup", "grill"]),
        ("fitness", ["workout", "running", "gym", "yoga", "muscle", "cardio", "stretch", "protein", "marathon", "strength", "training", "sneakers"]),
        ("travel", ["beach", "flight", "hotel", "island", "passport", "journey", "mountain", "luggage", "resort", "voyage", "tour", "map"]),
        ("gaming", ["console", "controller", "quest", "arcade", "level", "multiplayer", "dungeon", "strategy", "puzzle", "racing", "joystick", "boss"]),
        ("music", ["guitar", "piano", "concert", "melody", "album", "drums", "singer", "rhythm", "vinyl", "jazz", "chorus", "headphones"]),
        ("fashion", ["dress", "jacket", "denim", "scarf", "boots", "silk", "runway", "sweater", "handbag", "linen", "tailored", "vintage"]),
        ("gardening", ["garden", "seeds", "tomato", "soil", "flower", "compost", "shovel", "greenhouse", "orchid", "hedge", "lawn", "bulbs"]),
        ("finance", ["budget", "savings", "stock", "mortgage", "invest", "dividend", "pension", "credit", "loan", "market", "tax", "wealth"]),
        ("technology", ["laptop", "software", "processor", "cloud", "robot", "smartphone", "battery", "keyboard", "network", "server", "chip", "monitor"]),
        ("pets", ["puppy", "kitten", "leash", "aquarium", "parrot", "collar", "kennel", "treats", "hamster", "grooming", "litter", "veterinary"]),
        ("books", ["novel", "poetry", "author", "chapter", "library", "mystery", "biography", "paperback", "fiction", "memoir", "saga", "anthology"]),
        ("movies", ["film", "cinema", "director", "trailer", "actor", "thriller", "comedy", "screen", "premiere", "documentary", "sequel", "popcorn"]),
        ("cars", ["engine", "sedan", "tires", "brake", "garage", "convertible", "diesel", "mileage", "dashboard", "wheel", "turbo", "hybrid"]),
        ("baby", ["stroller", "diaper", "crib", "bottle", "toddler", "nursery", "pacifier", "blanket", "rattle", "bib", "onesie", "lullaby"]),
        ("beauty", ["lipstick", "serum", "mascara", "perfume", "skincare", "lotion", "nail", "blush", "cleanser", "shampoo", "fragrance", "powder"]),
        ("home", ["sofa", "lamp", "curtain", "pillow", "carpet", "shelf", "mirror", "candle", "vase", "wardrobe", "quilt", "cushion"]),
        ("outdoors", ["tent", "hiking", "camping", "backpack", "compass", "lantern", "trail", "kayak", "fishing", "sleeping", "canyon", "campfire"]),
        ("science", ["physics", "galaxy", "molecule", "telescope", "chemistry", "fossil", "planet", "experiment", "microscope", "atom", "genome", "orbit"]),
        ("sports", ["football", "tennis", "basketball", "stadium", "league", "goal", "racket", "referee", "trophy", "champion", "soccer", "court"]),
        ("art", ["painting", "canvas", "sculpture", "gallery", "brush", "portrait", "sketch", "watercolor", "easel", "museum", "mosaic", "pottery"]),
        ("health", ["vitamin", "doctor", "sleep", "therapy", "wellness", "clinic", "immune", "meditation", "nutrition", "posture", "remedy", "hydration"]),
        ("education", ["course", "lecture", "exam", "teacher", "homework", "university", "grammar", "tutor", "lesson", "diploma", "classroom", "essay"]),
        ("news", ["election", "report", "headline", "policy", "debate", "journalist", "economy", "summit", "press", "interview", "breaking", "analysis"]),
        ("crafts", ["knitting", "yarn", "sewing", "quilting", "beads", "origami", "glue", "embroidery", "stencil", "crochet", "fabric", "scissors"]),
        ("coffee", ["espresso", "latte", "beans", "roast", "barista", "mug", "grinder", "brew", "cappuccino", "aroma", "filter", "caffeine"]),
    ]

    static let general = ["new", "best", "classic", "premium", "simple", "ultimate", "essential", "guide",
                          "deluxe", "compact", "modern", "original", "smart", "daily", "complete", "mini"]
}
