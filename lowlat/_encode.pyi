from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

_Text: TypeAlias = str | bytes | None

def validation_result_size(symbol: _Text = None) -> int: ...
def encode_validation_result(order_id: int, accepted: bool, reason: int, timestamp: int = 0,
                             symbol: _Text = None) -> bytes: ...
def encode_validation_result_into(buf: Any, offset: int, order_id: int, accepted: bool, reason: int,
                                  timestamp: int = 0, symbol: _Text = None) -> int: ...
def encode_execution_report(order_id: int = 0, symbol: _Text = None, account: int = 0, side: int = 0,
                            status: int = 0, reason: int = 0, trade_id: int = 0, maker_order_id: int = 0,
                            taker_order_id: int = 0, is_maker: bool = False, last_price: float = 0.0,
                            last_quantity: int = 0, leaves_quantity: int = 0, cum_quantity: int = 0,
                            timestamp: int = 0, client_order_id: _Text = None) -> bytes: ...
def encode_execution_report_into(buf: Any, offset: int, order_id: int = 0, symbol: _Text = None, account: int = 0,
                                 side: int = 0, status: int = 0, reason: int = 0, trade_id: int = 0,
                                 maker_order_id: int = 0, taker_order_id: int = 0, is_maker: bool = False,
                                 last_price: float = 0.0, last_quantity: int = 0, leaves_quantity: int = 0,
                                 cum_quantity: int = 0, timestamp: int = 0, client_order_id: _Text = None) -> int: ...
def encode_trade(trade_id: int = 0, symbol: _Text = None, price: float = 0.0, quantity: int = 0,
                 aggressor_side: int = 0, maker_order_id: int = 0, taker_order_id: int = 0, timestamp: int = 0,
                 sequence: int = 0) -> bytes: ...
def encode_trade_into(buf: Any, offset: int, trade_id: int = 0, symbol: _Text = None, price: float = 0.0,
                      quantity: int = 0, aggressor_side: int = 0, maker_order_id: int = 0, taker_order_id: int = 0,
                      timestamp: int = 0, sequence: int = 0) -> int: ...
def encode_l2_update(symbol: _Text = None, sequence: int = 0, side: int = 0, price: float = 0.0, quantity: int = 0,
                     order_count: int = 0, timestamp: int = 0) -> bytes: ...
def encode_l2_update_into(buf: Any, offset: int, symbol: _Text = None, sequence: int = 0, side: int = 0,
                          price: float = 0.0, quantity: int = 0, order_count: int = 0, timestamp: int = 0) -> int: ...
def encode_validation_results_into(buf: Any, offset: int, order_ids: npt.NDArray[np.uint64],
                                   codes: npt.NDArray[np.uint8], symbol_index: npt.NDArray[np.int32],
                                   symbols: Sequence[_Text], timestamp: int = 0) -> int: ...
