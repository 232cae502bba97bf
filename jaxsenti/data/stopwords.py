"""Chinese stopwords for *descriptive* statistics (EDA word counts and log-ratio charts).

Where the list comes from: a hand-picked subset of the function words that head the common
public Chinese stopword lists (the HIT / 哈工大 list, the Baidu list and the Sichuan University
list, as aggregated e.g. in goto456/stopwords), restricted to words that jieba actually emits
as tokens and that carry no sentiment on their own: personal pronouns, demonstratives,
structural and modal particles, prepositions, conjunctions, copulas, classifiers/numerals and
filler interjections. Since the CJK-ideograph filter (``jaxsenti.data.text.cjk_only``) runs
before segmentation, no punctuation or Latin entries are needed.

Deliberately NOT stopwords (those generic lists do include many of them), because they carry
the sentiment or flip it and are exactly what a sentiment chart should show:

* negations: 不 没 没有 无 别 未 非 不是 不会 不能 …
* degree adverbs / intensifiers: 很 太 非常 挺 最 更 特别 比较 超 真 好 蛮 有点 一般 …
* contrast and concession markers: 但 但是 不过 却 可是 还是 就是 (reviews turn on them)
* evaluative verbs and words like 喜欢 推荐 值得 失望 再也 下次 还会.

This list is only used for EDA: the models see every word (the study's preprocessing keeps
all CJK words), so changing it cannot change any reported metric.
"""

from __future__ import annotations

STOPWORDS: frozenset[str] = frozenset(
    """
    的 地 得 之 了 着 过 是 为 被 把 将 让 给 对 向 从 自 于 以 在 和 与 及 跟 同 或 并 而 且
    有 也 都 就 又 再 才 还 已 已经 即 便 则 亦 乃 所 所以 因为 因此 由于 如果 若 虽然 虽 然后 而且
    并且 以及 或者 然而 于是 只是 只要 只有 除了 关于 对于 按照 通过 根据 为了 等 等等 之类
    我 我们 咱们 你 你们 您 他 他们 她 她们 它 它们 自己 大家 人家 别人 咱
    这 那 这个 那个 这些 那些 这里 那里 这儿 那儿 这样 那样 这么 那么 这种 那种 这家 那家
    这边 那边 这次 那次 这是 那是 此 其 其他 其它 其中 某 每 各 该 本 哪 哪里 哪个 什么 怎么
    谁 啥 多少 几
    一 二 两 三 个 位 次 些 一些 一个 一下 一点 一次 一样 一起 一直 一种 有些 有的 一家
    吧 啊 呢 吗 嘛 呀 哦 哈 哈哈 哈哈哈 呵呵 嗯 啦 咯 喔 哇 噢 哎 唉 罢了 而已 的话 之后 之前
    以后 以前 时候 的时候 时 后 前 上 下 里 中 内 外 去 来 到 说 看 想 要 会 能 可以 可能
    应该 觉得 感觉 知道 认为 就是说 总之 总的来说 其实 反正 当然 而是 还有 另外 然后再 比如
    """.split()
)
