"""A NautilusTrader node on the real Binance futures data + execution clients, pointed at a local venue by
configuration only. Run as a script (own process: Nautilus keeps global state):

    python tests/support/venue_nautilus_node.py <port> <seconds>

Prints one JSON line: bars received, order events, fills, the position. API keys from the environment
(DOLPHIN_VENUE_API_KEY / DOLPHIN_VENUE_API_SECRET), as a user would pass real ones.
"""

import json
import os
import sys
import threading
import time
from decimal import Decimal


def main(port: int, seconds: float) -> dict:
    from nautilus_trader.adapters.binance import BINANCE, BinanceAccountType
    from nautilus_trader.adapters.binance.config import BinanceDataClientConfig, BinanceExecClientConfig
    from nautilus_trader.adapters.binance.factories import (BinanceLiveDataClientFactory,
                                                            BinanceLiveExecClientFactory)
    from nautilus_trader.common.config import LoggingConfig
    from nautilus_trader.config import InstrumentProviderConfig, LiveExecEngineConfig, StrategyConfig, TradingNodeConfig
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.model.enums import OrderSide
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.trading.strategy import Strategy

    http, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    key, secret = os.environ["DOLPHIN_VENUE_API_KEY"], os.environ["DOLPHIN_VENUE_API_SECRET"]
    inst = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")
    result = {"bars": [], "events": [], "fills": [], "errors": []}

    class Probe(Strategy):
        def __init__(self):
            super().__init__(StrategyConfig(strategy_id="PROBE-001"))
            self.sent = False

        def on_start(self):
            self.subscribe_bars(BarType.from_str("BTCUSDT-PERP.BINANCE-5-MINUTE-LAST-EXTERNAL"))

        def on_bar(self, bar: Bar):
            result["bars"].append([bar.ts_event // 1_000_000, str(bar.close)])
            if not self.sent:
                self.sent = True
                instrument = self.cache.instrument(inst)
                self.submit_order(self.order_factory.market(inst, OrderSide.BUY,
                                                            instrument.make_qty(Decimal("0.010"))))

        def on_order_event(self, event):
            result["events"].append(type(event).__name__)

        def on_order_filled(self, event):
            result["fills"].append({"px": str(event.last_px), "qty": str(event.last_qty),
                                    "commission": str(event.commission), "liquidity": str(event.liquidity_side)})

    provider = InstrumentProviderConfig(load_ids=frozenset([inst]))
    config = TradingNodeConfig(
        trader_id="VENUE-001",
        logging=LoggingConfig(log_level="WARNING"),
        exec_engine=LiveExecEngineConfig(reconciliation=True),
        data_clients={BINANCE: BinanceDataClientConfig(
            account_type=BinanceAccountType.USDT_FUTURES, api_key=key, api_secret=secret,
            base_url_http=http, base_url_ws=f"{ws}/market", instrument_provider=provider)},
        exec_clients={BINANCE: BinanceExecClientConfig(
            account_type=BinanceAccountType.USDT_FUTURES, api_key=key, api_secret=secret,
            base_url_http=http, base_url_ws_stream=f"{ws}/private", instrument_provider=provider)},
        timeout_connection=20.0, timeout_reconciliation=10.0, timeout_portfolio=10.0,
        timeout_disconnection=5.0, timeout_post_stop=1.0,
    )
    node = TradingNode(config=config)
    node.trader.add_strategy(Probe())
    node.add_data_client_factory(BINANCE, BinanceLiveDataClientFactory)
    node.add_exec_client_factory(BINANCE, BinanceLiveExecClientFactory)
    node.build()
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result["fills"] and len(result["bars"]) >= 3:
            break
        time.sleep(0.2)
    positions = node.cache.positions_open()
    result["positions"] = [{"instrument": str(p.instrument_id), "qty": str(p.signed_qty)} for p in positions]
    node.stop()
    time.sleep(1.0)
    node.dispose()
    return result


if __name__ == "__main__":
    out = main(int(sys.argv[1]), float(sys.argv[2]))
    print("RESULT " + json.dumps(out), flush=True)
    os._exit(0)
