"""The sandbox's market: the strategy's bars, handed to Nautilus's simulated exchange.

``SandboxExecutionClient`` fills against what its ``SimulatedExchange`` sees on the message bus topics
``data.*.<venue>.*`` (quotes, trades, books, bars). NautilusTrader publishes bars on ``data.bars.<bar type>``
(``data.bars.BTCUSDT-PERP.BINANCE-5-MINUTE-LAST-EXTERNAL``), which that pattern never matches, so a sandbox node
whose strategy trades on bars had "no market": every order was rejected, and the node's ``bar_execution=True``
never applied. This actor subscribes the same bars and republishes each on ``data.bars.<venue>.<symbol>``,
where the sandbox picks it up (``process_bar``: open, high, low, close as trades, so a resting take-profit
fills when a bar trades through it). Quotes would need Binance's ``/public`` streams, which NautilusTrader only
routes for ``fstream.binance.com`` hosts; bars come from ``/market`` on Binance and on ``dolphin venue`` alike.
"""

from nautilus_trader.common.actor import Actor
from nautilus_trader.common.config import ActorConfig

from runtime.instruments import bar_type


class SandboxMarketFeedConfig(ActorConfig, frozen=True):
    symbols: tuple = ()
    bar_ms: int = 300_000


class SandboxMarketFeed(Actor):
    def __init__(self, config: SandboxMarketFeedConfig):
        super().__init__(config)
        self.bar_types = [bar_type(s, int(config.bar_ms)) for s in config.symbols]
        self.topics = {bt: f"data.bars.{bt.instrument_id.venue}.{bt.instrument_id.symbol}" for bt in self.bar_types}
        self.forwarded = 0

    def on_start(self) -> None:
        for bt in self.bar_types:
            self.subscribe_bars(bt)

    def on_bar(self, bar) -> None:
        topic = self.topics.get(bar.bar_type)
        if topic is not None:
            self.msgbus.publish(topic, bar)
            self.forwarded += 1


def sandbox_market_feed(symbols, bar_ms: int = 300_000) -> SandboxMarketFeed:
    return SandboxMarketFeed(SandboxMarketFeedConfig(component_id="SandboxMarketFeed", symbols=tuple(symbols),
                                                     bar_ms=int(bar_ms)))
