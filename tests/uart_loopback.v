// UART pins for the SimTransport test: with `loop` high the design echoes rx on tx one
// clock later; with `loop` low tx carries dev_tx (a device modelled by the testbench).
module uart_loopback(input clk, input rx, output reg tx, input loop, input dev_tx);
  initial tx = 1'b1;
  always @(posedge clk) tx <= loop ? rx : dev_tx;
endmodule
